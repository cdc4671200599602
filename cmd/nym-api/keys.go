package main

import (
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/nym-go/nym/mixnet/authority"
	"github.com/nym-go/nym/mixnet/directory"
)

func newInitCommand() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "init --data-dir DIR",
		Short: "Create the directory signing key and ticket issuer keys (if missing) and print its public key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireDataDir(dataDir); err != nil {
				return err
			}
			priv, created, err := authority.LoadOrCreateSigningKey(dataDir)
			if err != nil {
				return err
			}
			if !created {
				fmt.Fprintln(os.Stderr, "signing key already exists; not replacing it")
			}
			// The ticket issuer keys, so the first vote carries them.
			if _, err := authority.EnsureTicketKeys(dataDir, time.Now(), slog.New(slog.NewTextHandler(os.Stderr, nil))); err != nil {
				return err
			}
			return printPublicKey(cmd, priv)
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "directory for the signing key and state (required)")
	return cmd
}

func newIdentityCommand() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "identity --data-dir DIR",
		Short: "Print the directory's public key, which clients and nodes pin",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireDataDir(dataDir); err != nil {
				return err
			}
			priv, err := authority.LoadSigningKey(dataDir)
			if err != nil {
				return err
			}
			return printPublicKey(cmd, priv)
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "directory holding the signing key (required)")
	return cmd
}

func printPublicKey(cmd *cobra.Command, priv ed25519.PrivateKey) error {
	key, err := directory.KeyFromEd25519(priv.Public().(ed25519.PublicKey))
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(cmd.OutOrStdout(), key)
	return err
}
