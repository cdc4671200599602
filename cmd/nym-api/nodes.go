package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/nym-go/nym/mixnet/authority"
	"github.com/nym-go/nym/mixnet/directory"
)

// newNodesCommand is `nym-api nodes approve|reject|list`: the operator's
// admission decisions. They live in the data dir's approvals file, not in
// the locked state database, so the commands work whether the authority
// runs or not; a running authority rereads the file at its next probe
// round.
func newNodesCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "nodes",
		Short: "Approve, reject or list nodes (admission = approval seats only approved nodes)",
	}
	cmd.AddCommand(
		newDecideCommand(authority.DecisionApprove, "Admit nodes: in approval mode only approved nodes take seats"),
		newDecideCommand(authority.DecisionReject, "Refuse nodes in any mode: their registrations are refused and they lose their seats"),
		newListCommand(),
	)
	return cmd
}

func newDecideCommand(decision, short string) *cobra.Command {
	var dataDir, note string
	cmd := &cobra.Command{
		// An identity may start with '-' (base64url): "--" before them
		// keeps it from being read as a flag.
		Use:   decision + " --data-dir DIR [--note TEXT] -- IDENTITY...",
		Short: short,
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireDataDir(dataDir); err != nil {
				return err
			}
			ids := make([]directory.Key, 0, len(args))
			for _, a := range args {
				id, err := directory.ParseKey(a)
				if err != nil {
					return fmt.Errorf("node identity %q: %w", a, err)
				}
				ids = append(ids, id)
			}
			if err := authority.Decide(dataDir, decision, note, ids, time.Now()); err != nil {
				return err
			}
			for _, id := range ids {
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", decision, id)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "the authority's data dir (required)")
	cmd.Flags().StringVar(&note, "note", "", "why, for the record (e.g. the operator's contact)")
	return cmd
}

func newListCommand() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "list --data-dir DIR",
		Short: "List the admission decisions taken",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireDataDir(dataDir); err != nil {
				return err
			}
			m, err := authority.LoadDecisions(dataDir)
			if err != nil {
				return err
			}
			for _, id := range authority.SortedDecisions(m) {
				d := m[id]
				fmt.Fprintf(cmd.OutOrStdout(), "%s\t%s\t%s\t%s\n", id, d.Decision, d.At.Format(time.RFC3339), d.Note)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "the authority's data dir (required)")
	return cmd
}
