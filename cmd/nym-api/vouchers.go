package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/nym-go/nym/mixnet/authority"
	"github.com/nym-go/nym/mixnet/ticket"
)

// newVouchersCommand is `nym-api vouchers create|add|list`: the vouchers
// that pay for ticketbooks. They live in the data dir's vouchers file, so
// the commands work while the authority runs; install the same codes at
// every authority of the network.
func newVouchersCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "vouchers",
		Short: "Mint, install or list the vouchers clients redeem for ticketbooks",
	}
	cmd.AddCommand(newVouchersCreateCommand(), newVouchersAddCommand(), newVouchersListCommand())
	return cmd
}

func newVouchersCreateCommand() *cobra.Command {
	var (
		dataDir, typ string
		tickets      int
		count        int
	)
	cmd := &cobra.Command{
		Use:   "create --data-dir DIR --tickets N --type T [--count C]",
		Short: "Mint vouchers, install them here and print their codes (then `vouchers add` them at every other authority)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireDataDir(dataDir); err != nil {
				return err
			}
			t, err := ticket.ParseType(typ)
			if err != nil {
				return fmt.Errorf("--type: %w", err)
			}
			if count < 1 || count > 100000 {
				return fmt.Errorf("--count %d: want 1..100000", count)
			}
			vs := make([]ticket.Voucher, count)
			for i := range vs {
				if vs[i], err = ticket.NewVoucher(t, tickets); err != nil {
					return fmt.Errorf("--tickets: %w", err)
				}
			}
			if _, err := authority.AddVouchers(dataDir, vs); err != nil {
				return err
			}
			for _, v := range vs {
				fmt.Fprintln(cmd.OutOrStdout(), v)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&dataDir, "data-dir", "", "the authority's data dir (required)")
	fl.IntVar(&tickets, "tickets", 50, fmt.Sprintf("tickets each voucher buys (1..%d)", ticket.MaxIssueTickets))
	fl.StringVar(&typ, "type", ticket.TypeMixnetEntry.String(), "ticket type: mixnet-entry, wireguard-entry or wireguard-exit")
	fl.IntVar(&count, "count", 1, "how many vouchers to mint")
	return cmd
}

func newVouchersAddCommand() *cobra.Command {
	var dataDir, file string
	cmd := &cobra.Command{
		Use:   "add --data-dir DIR [--file F|-] [CODE...]",
		Short: "Install vouchers minted at another authority (codes as arguments, or one a line in a file)",
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireDataDir(dataDir); err != nil {
				return err
			}
			codes := args
			if file != "" {
				var r io.Reader = cmd.InOrStdin()
				if file != "-" {
					f, err := os.Open(file)
					if err != nil {
						return err
					}
					defer f.Close()
					r = f
				}
				sc := bufio.NewScanner(r)
				for sc.Scan() {
					if line := strings.TrimSpace(sc.Text()); line != "" && !strings.HasPrefix(line, "#") {
						codes = append(codes, line)
					}
				}
				if err := sc.Err(); err != nil {
					return err
				}
			}
			if len(codes) == 0 {
				return fmt.Errorf("no voucher codes given")
			}
			vs := make([]ticket.Voucher, len(codes))
			for i, c := range codes {
				var err error
				if vs[i], err = ticket.ParseVoucher(c); err != nil {
					return err
				}
			}
			n, err := authority.AddVouchers(dataDir, vs)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "added %d vouchers (%d already installed)\n", n, len(vs)-n)
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "the authority's data dir (required)")
	cmd.Flags().StringVar(&file, "file", "", "read codes from this file, one a line (- for stdin)")
	return cmd
}

func newVouchersListCommand() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "list --data-dir DIR",
		Short: "List the vouchers installed here and, when the authority is stopped, whether each was used here",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireDataDir(dataDir); err != nil {
				return err
			}
			vs, err := authority.LoadVouchers(dataDir)
			if err != nil {
				return err
			}
			used, uerr := authority.VouchersUsed(dataDir, vs)
			if uerr != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), "nym-api: not showing which vouchers were used:", uerr)
			}
			for i, v := range vs {
				state := "unknown"
				if uerr == nil {
					state = map[bool]string{true: "used", false: "unused"}[used[i]]
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s\t%s\t%d\t%s\n", v, v.Type, v.Tickets, state)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "the authority's data dir (required)")
	return cmd
}
