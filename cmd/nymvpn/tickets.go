package main

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/nym-go/nym/mixnet/ticket"
)

// ticketBookPath is the ticketbook of the daemon keeping its state at
// statePath: beside it, one per state file as the consensus cache is, in
// root's state directory (the book holds private ticket keys; it is 0600).
func ticketBookPath(statePath string) string {
	return besideState(statePath, "tickets", ".book")
}

// besideState names a file of the daemon keeping its state at statePath:
// base plus the state file's suffix (one per --socket) plus ext, in the same
// directory.
func besideState(statePath, base, ext string) string {
	name := strings.TrimSuffix(filepath.Base(statePath), ".state")
	name = strings.TrimPrefix(strings.TrimPrefix(name, "platform"), ".")
	if name != "" && !strings.HasPrefix(name, "-") {
		name = "-" + name
	}
	return filepath.Join(filepath.Dir(statePath), base+name+ext)
}

// ticketTypes are the types a user may hold, in the order they are listed.
var ticketTypes = []ticket.Type{ticket.TypeMixnetEntry, ticket.TypeWireGuardEntry, ticket.TypeWireGuardExit}

func newTickets(o *options) *cobra.Command {
	var book string
	path := func() string {
		if book != "" {
			return book
		}
		return ticketBookPath(defaultStatePath(o.socket))
	}
	cmd := &cobra.Command{
		Use:   "tickets",
		Short: "List the bandwidth tickets left in the ticketbook",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := ticket.LoadBook(path())
			if err != nil {
				return err
			}
			now := time.Now()
			w := cmd.OutOrStdout()
			total := 0
			for _, t := range ticketTypes {
				n := b.Remaining(t, now)
				total += n
				if n > 0 {
					fmt.Fprintf(w, "%-16s %d tickets of %d MB\n", t.String()+":", n, t.Quota()/1_000_000)
				}
			}
			if total == 0 {
				fmt.Fprintf(w, "no tickets left (%s); run `nymvpn tickets add VOUCHER`\n", path())
			}
			return nil
		},
	}
	cmd.PersistentFlags().StringVar(&book, "book", "", "the ticketbook file (default: beside the daemon's state, one per --socket)")

	var req connectRequest
	add := &cobra.Command{
		Use:   "add VOUCHER (--network FILE | --directory URL --directory-key KEY)",
		Short: "Redeem a voucher with the directory authorities for a ticketbook",
		Long: "Redeem a voucher with the directory authorities for a ticketbook. Each authority signs the\n" +
			"tickets blind: none of them can tell where a ticket is later spent, and no gateway can tell\n" +
			"who bought it. A voucher is good for one ticketbook.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := req.checkDirectory(); err != nil {
				return err
			}
			b, err := ticket.LoadBook(path())
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Minute)
			defer cancel()
			n, err := ticket.Redeem(ctx, req.network, &http.Client{Timeout: 30 * time.Second}, args[0], b)
			if err != nil {
				return fmt.Errorf("redeeming the voucher: %w", err)
			}
			if err := b.Save(path()); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d tickets added to %s\n", n, path())
			return nil
		},
	}
	add.Flags().StringVar(&req.networkFile, "network", "", "network file naming the directory authorities and their threshold (or --directory and --directory-key)")
	add.Flags().StringVar(&req.DirectoryURL, "directory", "", "URL of the nym-api directory: a network of one (with --directory-key)")
	add.Flags().StringVar(&req.DirectoryKey, "directory-key", "", "the directory's public key")
	cmd.AddCommand(add)
	return cmd
}
