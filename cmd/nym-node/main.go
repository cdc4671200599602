// Command nym-node runs one node of the mixnet: a mix node, an entry
// gateway or an exit gateway, or all of them in turn as the directory
// assigns (--mode auto).
package main

import (
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/nym-go/nym/mixnet/node"
	"github.com/nym-go/nym/mixnet/nodekey"
)

func main() {
	if err := newRoot().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "nym-node:", err)
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "nym-node",
		Short:         "Run a node of the mixnet: mixnode, entry gateway or exit gateway",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newInit(), newIdentity(), newRun())
	return root
}

// settings binds the flags shared by init and run onto a Config.
type settings struct {
	dataDir  string
	logLevel string
	cfg      node.Config
}

func (s *settings) bind(cmd *cobra.Command) {
	d := node.DefaultConfig()
	f := cmd.Flags()
	f.StringVar(&s.dataDir, "data-dir", "", "directory holding keys, config.toml and state (required)")
	f.StringVar((*string)(&s.cfg.Mode), "mode", string(d.Mode), "mixnode, entry-gateway, exit-gateway or auto")
	f.StringVar(&s.cfg.NetworkFile, "network", "", "network file naming the directory authorities and their threshold (nym-api network)")
	f.StringVar(&s.cfg.DirectoryURL, "directory", "", "URL of the nym-api directory: a network of one, with --directory-key (instead of --network)")
	f.StringVar(&s.cfg.DirectoryKey, "directory-key", "", "the directory's public key (nym-api identity)")
	cmd.MarkFlagsMutuallyExclusive("network", "directory")
	cmd.MarkFlagsMutuallyExclusive("network", "directory-key")
	f.StringVar(&s.cfg.MixnetListen, "mixnet-listen", d.MixnetListen, "address for links from other nodes")
	f.StringVar(&s.cfg.HTTPListen, "http-listen", d.HTTPListen, "address for the public HTTP API")
	f.StringVar(&s.cfg.MetricsListen, "metrics-listen", d.MetricsListen, "address for /metrics, e.g. 127.0.0.1:9100 (default: not served)")
	f.StringVar(&s.cfg.ClientsListen, "clients-listen", d.ClientsListen, "address for client connections (gateways)")
	f.StringVar(&s.cfg.WireGuardListen, "wireguard-listen", "", "IP:port of the gateway's WireGuard door for fast mode: UDP WireGuard, TCP registration (default: none)")
	f.StringVar(&s.cfg.AnnounceHost, "announce-host", "", "host other nodes and clients reach this node at (default: the listen host)")
	f.StringVar(&s.logLevel, "log-level", "info", "debug, info, warn or error")
}

// resolve lays the flags the user set over the config file (or defaults).
func (s *settings) resolve(cmd *cobra.Command) (node.Config, error) {
	if s.dataDir == "" {
		return node.Config{}, errors.New("--data-dir is required")
	}
	cfg, err := node.LoadConfig(s.dataDir)
	if err != nil {
		return cfg, err
	}
	set := func(name string, dst *string, v string) {
		if cmd.Flags().Changed(name) {
			*dst = v
		}
	}
	set("mode", (*string)(&cfg.Mode), string(s.cfg.Mode))
	// One way of naming the directory replaces the other from the file.
	if cmd.Flags().Changed("network") {
		path, err := filepath.Abs(s.cfg.NetworkFile)
		if err != nil {
			return cfg, fmt.Errorf("--network: %w", err)
		}
		cfg.NetworkFile, cfg.DirectoryURL, cfg.DirectoryKey = path, "", ""
	}
	if cmd.Flags().Changed("directory") || cmd.Flags().Changed("directory-key") {
		cfg.NetworkFile = ""
	}
	set("directory", &cfg.DirectoryURL, s.cfg.DirectoryURL)
	set("directory-key", &cfg.DirectoryKey, s.cfg.DirectoryKey)
	set("mixnet-listen", &cfg.MixnetListen, s.cfg.MixnetListen)
	set("http-listen", &cfg.HTTPListen, s.cfg.HTTPListen)
	set("metrics-listen", &cfg.MetricsListen, s.cfg.MetricsListen)
	set("clients-listen", &cfg.ClientsListen, s.cfg.ClientsListen)
	set("announce-host", &cfg.AnnounceHost, s.cfg.AnnounceHost)
	set("wireguard-listen", &cfg.WireGuardListen, s.cfg.WireGuardListen)
	return cfg, nil
}

func newInit() *cobra.Command {
	var s settings
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create keys and config.toml in the data directory",
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := s.resolve(cmd)
			if err != nil {
				return err
			}
			keys, err := nodekey.Create(cfg.DataDir)
			if err != nil {
				return err
			}
			if err := node.WriteConfig(cfg); err != nil {
				return err
			}
			printIdentity(cmd, keys)
			return nil
		},
	}
	s.bind(cmd)
	return cmd
}

func newIdentity() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "identity",
		Short: "Print the node's identity and Noise keys",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dataDir == "" {
				return errors.New("--data-dir is required")
			}
			keys, err := nodekey.Load(dataDir)
			if errors.Is(err, nodekey.ErrNoKeys) {
				return fmt.Errorf("%w; run nym-node init first", err)
			}
			if err != nil {
				return err
			}
			printIdentity(cmd, keys)
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "the node's data directory")
	return cmd
}

func printIdentity(cmd *cobra.Command, keys *nodekey.Keys) {
	id, noise := keys.IdentityKey(), keys.NoiseKey()
	fmt.Fprintf(cmd.OutOrStdout(), "identity %s\nnoise    %s\n",
		base64.RawURLEncoding.EncodeToString(id[:]), base64.RawURLEncoding.EncodeToString(noise[:]))
}

func newRun() *cobra.Command {
	var s settings
	var ef exitFlags
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the node until interrupted",
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := s.resolve(cmd)
			if err != nil {
				return err
			}
			var level slog.Level
			if err := level.UnmarshalText([]byte(s.logLevel)); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			router, err := ef.prepareRouter(cfg, log)
			if err != nil {
				return err
			}
			opts := node.Options{Logger: log}
			if router != nil {
				opts.RouterKey = &router.key
			}
			if _, _, ok := cfg.WireGuardExitDoor(); ok && router == nil {
				// The exit's WireGuard door forwards only under the IP
				// router's exit networking (NAT, policy); without it,
				// no door.
				log.Warn("no IP router: the exit's WireGuard door (wireguard_listen) stays closed")
				cfg.WireGuardListen = ""
			}
			n, err := node.New(cfg, opts)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if router == nil {
				return n.Run(ctx)
			}
			return runWithRouter(ctx, n, router)
		},
	}
	s.bind(cmd)
	ef.bind(cmd)
	return cmd
}
