// Command nym-api runs the directory authority (package mixnet/authority):
// nodes register with it, it probes them, assigns roles every epoch and
// publishes the signed topology. With --network it is one authority of a
// network of them: it votes each epoch and serves the consensus signed by
// the threshold of authorities the network file names (`nym-api network`
// writes that file from each authority's `nym-api init` key and URL).
package main

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

func main() {
	if err := newRootCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "nym-api:", err)
		os.Exit(1)
	}
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "nym-api",
		Short: "Directory authority of the mixnet: registration, epochs, roles, signed topology or k-of-n consensus",
		// Usage helps after a flag mistake, not after a runtime failure:
		// PersistentPreRun runs only once flags parsed.
		PersistentPreRun: func(cmd *cobra.Command, args []string) { cmd.SilenceUsage = true },
		SilenceErrors:    true,
	}
	root.AddCommand(newRunCommand(), newInitCommand(), newIdentityCommand(), newNetworkCommand(), newNodesCommand(), newVouchersCommand())
	return root
}

// newLogger builds the process logger from the --log-level and --log-format
// flags.
func newLogger(level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// requireDataDir reports a missing --data-dir clearly.
func requireDataDir(dir string) error {
	if dir == "" {
		return fmt.Errorf("--data-dir is required")
	}
	return nil
}
