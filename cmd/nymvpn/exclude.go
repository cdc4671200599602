package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

// newExclude is `nymvpn exclude -- COMMAND...`: the program and its
// children bypass the tunnel (and the kill switch) while it is up.
//
// Who may exclude: root alone, because a program outside the tunnel shows
// the uplink's address to whomever it talks to, and nothing the kill switch
// promises holds for it. The group is root's (see platform/split.go), so a
// user can neither join it nor be put in it by a program of theirs. Run
// under sudo, the command drops to the invoking user (SUDO_UID, SUDO_GID and
// that user's groups) before it runs the program, as users expect.
func newExclude(o *options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "exclude -- COMMAND [ARG...]",
		Short: "Run a program outside the tunnel (as root, e.g. with sudo; it runs as the sudo user)",
		Long: "Run a program whose traffic bypasses the tunnel and the kill switch while the tunnel is up,\n" +
			"as its children's does. Only root may; under sudo the program runs as the invoking user.\n" +
			"Everything else stays in the tunnel. `nymvpn status` lists the excluded programs;\n" +
			"disconnecting moves them back into the tunnel.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runExcluded(args)
		},
	}
	cmd.Flags().SetInterspersed(false)
	return cmd
}

// printExcluded is the excluded programs' part of `nymvpn status`.
func printExcluded(w io.Writer, excluded []string) {
	for i, p := range excluded {
		label := ""
		if i == 0 {
			label = "excluded:"
		}
		fmt.Fprintf(w, "%-10s %s (outside the tunnel)\n", label, p)
	}
}
