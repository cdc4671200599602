package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/ticket"
)

// ticketBookPath is the ticketbook the daemon keeping its state at
// statePath uses for network: beside the state, one per state file as the
// consensus cache is, in root's state directory (the book holds private
// ticket keys; it is 0600), and one per network, since a ticket is good
// only with the authorities that issued it.
func ticketBookPath(statePath string, network *directory.Network) string {
	keys := make([]string, 0, len(network.Authorities))
	for _, a := range network.Authorities {
		keys = append(keys, a.Key.String())
	}
	slices.Sort(keys)
	sum := sha256.Sum256([]byte(strings.Join(keys, "\n")))
	return besideState(statePath, "tickets", "-"+hex.EncodeToString(sum[:6])+".book")
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

func newTickets(o *options) *cobra.Command {
	var book, state string
	var net connectRequest // only its directory flags
	// path is the book: --book, or the daemon's for the network named.
	path := func() (string, error) {
		if book != "" {
			return book, nil
		}
		if err := net.checkDirectory(); err != nil {
			return "", fmt.Errorf("%w (or --book FILE)", err)
		}
		if state == "" {
			state = defaultStatePath(o.socket)
		}
		return ticketBookPath(state, net.network), nil
	}
	cmd := &cobra.Command{
		Use:   "tickets (--network FILE | --directory URL --directory-key KEY | --book FILE)",
		Short: "List the bandwidth tickets left in the ticketbook",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := path()
			if err != nil {
				return err
			}
			b, err := ticket.LoadBook(p)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			batches := b.List(time.Now())
			for _, bt := range batches {
				fmt.Fprintf(w, "%-16s %4d tickets of %d MB, expire %s\n", bt.Type.String()+":", bt.Count, bt.Type.Quota()/1_000_000, bt.Expiry.Format(time.DateOnly))
			}
			if len(batches) == 0 {
				fmt.Fprintf(w, "no tickets left in %s; run `nymvpn tickets add VOUCHER`\n", p)
			}
			return nil
		},
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&net.networkFile, "network", "", "network file naming the directory authorities and their threshold (or --directory and --directory-key)")
	pf.StringVar(&net.DirectoryURL, "directory", "", "URL of the nym-api directory: a network of one (with --directory-key)")
	pf.StringVar(&net.DirectoryKey, "directory-key", "", "the directory's public key")
	pf.StringVar(&state, "state", "", "the daemon's state file, beside which its ticketbooks live (default: the one of --socket)")
	pf.StringVar(&book, "book", "", "a ticketbook file of your own (for socks5 --tickets), instead of the daemon's")

	add := &cobra.Command{
		Use:   "add VOUCHER",
		Short: "Redeem a voucher with the directory authorities for a ticketbook",
		Long: "Redeem a voucher with the directory authorities for a ticketbook. Each authority signs the\n" +
			"tickets blind: none of them can tell where a ticket is later spent, and no gateway can tell\n" +
			"who bought it. A voucher is good for one ticketbook.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := path()
			if err != nil {
				return err
			}
			if net.network == nil {
				if err := net.checkDirectory(); err != nil {
					return fmt.Errorf("redeeming needs the authorities: %w", err)
				}
			}
			b, err := ticket.LoadBook(p)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Minute)
			defer cancel()
			n, err := ticket.Redeem(ctx, net.network, &http.Client{Timeout: 30 * time.Second}, args[0], b)
			if err != nil {
				return fmt.Errorf("redeeming the voucher: %w", err)
			}
			if err := b.Save(p); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d tickets added to %s\n", n, p)
			return nil
		},
	}
	cmd.AddCommand(add)
	return cmd
}
