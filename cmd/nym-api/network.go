package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/nym-go/nym/mixnet/directory"
)

// newNetworkCommand assembles the network file from each authority's name,
// key (what `nym-api init` printed) and URL. A command rather than a
// paragraph of docs: it checks what operators paste (keys, URLs, duplicates,
// the threshold rule) when the file is made, not when n processes fail to
// agree, and it writes the exact syntax every node and client reads.
func newNetworkCommand() *cobra.Command {
	var (
		threshold int
		genesis   string
		out       string
	)
	cmd := &cobra.Command{
		Use:   "network [--threshold K] [--genesis TIME] [--out FILE] NAME=KEY@URL...",
		Short: "Write the network file naming the authorities (KEY is what `nym-api init` printed on each)",
		Long: `Write the network file: the authorities of the network and how many of them must sign
a consensus (the threshold, k). Give every authority as NAME=KEY@URL, where KEY is the public key its
operator's "nym-api init" printed and URL the base URL of its API, e.g.

  nym-api network --out network.toml \
    auth1=<key1>@http://192.0.2.10:8000 auth2=<key2>@http://192.0.2.11:8000 auth3=<key3>@http://192.0.2.12:8000

Every authority runs "nym-api run --network network.toml" with its own data dir (its key picks its entry);
nodes and clients are given the same file. k defaults to a majority of the authorities and must exceed
half of them. All authorities must also run with the same --epoch-length, --rotation-epochs and role limits.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			n := &directory.Network{Threshold: threshold}
			for _, arg := range args {
				a, err := parseAuthorityArg(arg)
				if err != nil {
					return err
				}
				n.Authorities = append(n.Authorities, a)
			}
			if n.Threshold == 0 {
				n.Threshold = n.Majority()
			}
			if genesis != "" {
				t, err := time.Parse(time.RFC3339, genesis)
				if err != nil {
					return fmt.Errorf("--genesis %q: want RFC 3339, e.g. 2026-01-01T00:00:00Z: %v", genesis, err)
				}
				n.Genesis = t
			}
			text, err := n.Encode()
			if err != nil {
				return err
			}
			if out == "" {
				_, err = cmd.OutOrStdout().Write(text)
				return err
			}
			// Public: no secret in it; readable by the nodes' users.
			if err := os.WriteFile(out, text, 0o644); err != nil {
				return fmt.Errorf("write network file: %w", err)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&threshold, "threshold", 0, "signatures a consensus needs (default: a majority of the authorities)")
	fl.StringVar(&genesis, "genesis", "", "start of epoch 0, RFC 3339 (default: the Unix epoch)")
	fl.StringVar(&out, "out", "", "file to write (default: standard output)")
	return cmd
}

// parseAuthorityArg reads NAME=KEY@URL.
func parseAuthorityArg(arg string) (directory.Authority, error) {
	name, rest, ok1 := strings.Cut(arg, "=")
	keyText, url, ok2 := strings.Cut(rest, "@")
	if !ok1 || !ok2 || name == "" {
		return directory.Authority{}, fmt.Errorf("authority %q: want NAME=KEY@URL", arg)
	}
	key, err := directory.ParseKey(keyText)
	if err != nil {
		return directory.Authority{}, fmt.Errorf("authority %q: %w", name, err)
	}
	if url == "" {
		return directory.Authority{}, errors.New("authority " + name + ": empty URL")
	}
	return directory.Authority{Name: name, Key: key, URL: url}, nil
}
