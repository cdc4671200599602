// Command echo-service is an example mixnet service: it connects as a client,
// prints its address, and answers every message that came with reply SURBs
// by sending the same bytes back through them. It never learns who asked.
package main

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/nym-go/nym/mixnet/client"
	"github.com/nym-go/nym/mixnet/directory"
)

func main() {
	if err := newRoot().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "echo-service:", err)
		os.Exit(1)
	}
}

type options struct {
	directoryURL, directoryKey string
	identityFile, gateway      string
	hopDelay, sendInterval     time.Duration
	coverInterval              time.Duration
	fast                       bool
	maxConcurrent              int
	replyTimeout               time.Duration
	logLevel                   string
}

func newRoot() *cobra.Command {
	var o options
	d := client.NymDefaults()
	cmd := &cobra.Command{
		Use:   "echo-service --directory URL --directory-key KEY",
		Short: "Answer every mixnet message that carries reply SURBs with its own bytes",
		Args:  cobra.NoArgs,
		// Usage helps after a flag mistake, not after a runtime failure.
		PersistentPreRun: func(cmd *cobra.Command, args []string) { cmd.SilenceUsage = true },
		SilenceErrors:    true,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return run(ctx, o, cmd)
		},
	}
	// Flags both the service and ping use.
	pf := cmd.PersistentFlags()
	pf.StringVar(&o.directoryURL, "directory", "", "URL of the nym-api directory (required)")
	pf.StringVar(&o.directoryKey, "directory-key", "", "the directory's public key, as 'nym-api identity' prints it (required)")
	pf.StringVar(&o.gateway, "gateway", "", "identity of the gateway to use (default: a random entry gateway; give it to keep the address)")
	pf.DurationVar(&o.hopDelay, "hop-delay", d.HopDelay, "mean delay at each mix (0: none)")
	pf.DurationVar(&o.sendInterval, "send-interval", d.SendInterval, "mean interval of the Poisson sending stream (0: send at once, no cover in it)")
	pf.DurationVar(&o.coverInterval, "cover-interval", d.CoverInterval, "mean interval of the loop cover stream (0: off)")
	pf.BoolVar(&o.fast, "fast", false, "no delays, no Poisson stream, no cover: fastest, least anonymous")
	pf.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	f := cmd.Flags()
	f.StringVar(&o.identityFile, "identity", "echo-service.key", "file holding the service's identity key; created when missing. Keep it to keep the address")
	f.IntVar(&o.maxConcurrent, "max-concurrent", 64, "replies in progress at once; further messages wait")
	f.DurationVar(&o.replyTimeout, "reply-timeout", 30*time.Second, "how long one reply may wait for SURBs")
	cmd.AddCommand(newPing(&o))
	return cmd
}

// newPing is the other end, for trying the service out: it sends one
// message with reply SURBs and prints the echo.
func newPing(o *options) *cobra.Command {
	var timeout time.Duration
	var surbs int
	cmd := &cobra.Command{
		Use:   "ping ADDRESS MESSAGE",
		Short: "Send MESSAGE to the echo service at ADDRESS with reply SURBs, print the answer and the round trip",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			to, err := client.ParseAddress(args[0])
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			return ping(ctx, *o, to, []byte(args[1]), surbs, cmd)
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", time.Minute, "give up after this long")
	cmd.Flags().IntVar(&surbs, "surbs", 5, "reply SURBs to attach")
	return cmd
}

func ping(ctx context.Context, o options, to client.Address, msg []byte, surbs int, cmd *cobra.Command) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", o.logLevel)
	}
	o.identityFile = "" // a fresh, throwaway identity
	cfg, err := o.config(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))
	if err != nil {
		return err
	}
	c, err := client.Connect(ctx, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	start := time.Now()
	if err := c.SendWithReplySURBs(ctx, to, msg, surbs); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("no echo: %w", ctx.Err())
		case m := <-c.Receive():
			if !m.IsReply {
				continue
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s\n", m.Data)
			fmt.Fprintf(cmd.ErrOrStderr(), "round trip %v\n", time.Since(start).Round(time.Millisecond))
			return nil
		}
	}
}

func run(ctx context.Context, o options, cmd *cobra.Command) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", o.logLevel)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	cfg, err := o.config(log)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	c, err := client.Connect(cctx, cfg)
	cancel()
	if err != nil {
		return err
	}
	defer c.Close()
	// The address on stdout, alone, so scripts can capture it.
	fmt.Fprintln(cmd.OutOrStdout(), c.Address())
	log.Info("echo service ready", "address", c.Address())
	serve(ctx, c, o, log)
	return nil
}

func (o options) config(log *slog.Logger) (client.Config, error) {
	if o.directoryURL == "" || o.directoryKey == "" {
		return client.Config{}, errors.New("--directory and --directory-key are required")
	}
	key, err := base64.RawURLEncoding.DecodeString(o.directoryKey)
	if err != nil || len(key) != ed25519.PublicKeySize {
		return client.Config{}, fmt.Errorf("--directory-key %q: not a base64url ed25519 public key", o.directoryKey)
	}
	lp := client.Loopix{HopDelay: o.hopDelay, SendInterval: o.sendInterval, CoverInterval: o.coverInterval}
	if o.fast {
		lp = client.Loopix{}
	}
	cfg := client.Config{
		DirectoryURL: o.directoryURL,
		DirectoryKey: ed25519.PublicKey(key),
		IdentityFile: o.identityFile,
		Loopix:       &lp,
		Logger:       log,
	}
	if o.gateway != "" {
		if cfg.Gateway, err = directory.ParseKey(o.gateway); err != nil {
			return client.Config{}, fmt.Errorf("--gateway: %w", err)
		}
	}
	return cfg, nil
}

// serve echoes until ctx ends. Replies run concurrently, since one may wait
// for its sender to send more SURBs, but at most maxConcurrent at once.
func serve(ctx context.Context, c *client.Client, o options, log *slog.Logger) {
	sem := make(chan struct{}, max(o.maxConcurrent, 1))
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		var m client.Message
		select {
		case <-ctx.Done():
			return
		case msg, ok := <-c.Receive():
			if !ok {
				return
			}
			m = msg
		}
		if m.SenderTag.IsZero() {
			log.Info("message without reply SURBs; nobody to answer", "bytes", len(m.Data))
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			rctx, cancel := context.WithTimeout(ctx, o.replyTimeout)
			defer cancel()
			if err := c.Reply(rctx, m.SenderTag, m.Data); err != nil {
				log.Warn("reply failed", "tag", m.SenderTag, "err", err)
				return
			}
			log.Debug("echoed", "tag", m.SenderTag, "bytes", len(m.Data))
		}()
	}
}
