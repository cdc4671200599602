// Command nymvpn tunnels this host's IP traffic through the mixnet to an
// exit's IP packet router.
//
// The tunnel lives in a daemon (nymvpn daemon) that connect, status and
// disconnect talk to over a unix socket; connect starts the daemon when none
// runs.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	if err := newRoot().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "nymvpn:", err)
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	var o options
	root := &cobra.Command{
		Use:               "nymvpn",
		Short:             "An IP VPN over the mixnet",
		SilenceErrors:     true,
		PersistentPreRun:  func(cmd *cobra.Command, args []string) { cmd.SilenceUsage = true },
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
	}
	root.PersistentFlags().StringVar(&o.socket, "socket", defaultSocket, "the daemon's control socket")
	root.PersistentFlags().StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	root.AddCommand(newConnect(&o), newStatus(&o), newDisconnect(&o), newDaemon(&o), newSocks5(&o), newTickets(&o),
		newSet(&o), newEvents(&o), newLockdown(&o), newExclude(&o))
	return root
}
