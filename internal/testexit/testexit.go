// Package testexit runs an exit for tests: the production exit.Service at
// the exit gateway of an in-process test network, over a userspace TUN (a
// gVisor stack that is the test's internet) and exit.NoHost, which changes
// nothing on the machine, so no root is needed.
package testexit

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/nym-go/nym/internal/poll"
	"github.com/nym-go/nym/internal/testnet"
	"github.com/nym-go/nym/ipr/exit"
	"github.com/nym-go/nym/ipr/router"
	"github.com/nym-go/nym/mixnet/client"
	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/link"
	"github.com/nym-go/nym/tun"
)

// DefaultReplyTimeout is the test exit's exit.Config.ControlTimeout unless
// Options say otherwise: generous, for a loaded test machine.
const DefaultReplyTimeout = 5 * time.Second

// Exit is a running test exit.
type Exit struct {
	Service  *exit.Service
	Client   *client.Client // the router's mixnet client
	Router   *router.Router
	Internet *tun.Net // the internet's side: serve things on it
}

// Options configure a test exit.
type Options struct {
	Identity *link.KeyPair // the router's identity; nil: a fresh one
	Loopix   client.Loopix // the router client's shaping
	Internet []netip.Addr  // the addresses the internet answers at
	// SURBs is the router client's SURB policy (exit.Config.SURBs).
	SURBs client.SURBPolicy
	// ControlTimeout is exit.Config.ControlTimeout; zero means
	// DefaultReplyTimeout.
	ControlTimeout time.Duration
}

// Start runs an exit with router identity id (nil: a fresh one) and
// shaping lp at n's exit gateway; the internet answers at the given
// addresses. Everything stops when the test ends.
func Start(t testing.TB, n *testnet.Net, id *link.KeyPair, lp client.Loopix, internet ...netip.Addr) *Exit {
	t.Helper()
	return StartOptions(t, n, Options{Identity: id, Loopix: lp, Internet: internet})
}

// StartOptions is Start with all the options.
func StartOptions(t testing.TB, n *testnet.Net, o Options) *Exit {
	t.Helper()
	dev, inet, err := tun.CreateNetstack(o.Internet, nil, 1500)
	if err != nil {
		t.Fatal(err)
	}
	if o.ControlTimeout <= 0 {
		o.ControlTimeout = DefaultReplyTimeout
	}
	dirURL, dirKey, network := n.DirectoryURL, n.DirectoryKey, (*directory.Network)(nil)
	if n.NetworkFile != "" { // a network of authorities
		dirURL, dirKey, network = "", nil, n.Network
	}
	svc, err := exit.New(exit.Config{
		DataDir:        t.TempDir(),
		Identity:       o.Identity,
		DirectoryURL:   dirURL,
		DirectoryKey:   dirKey,
		Network:        network,
		Gateway:        directory.Key(n.Exit().Identity()),
		Loopix:         &o.Loopix,
		SURBs:          o.SURBs,
		Device:         dev,
		Host:           exit.NoHost{},
		ControlTimeout: o.ControlTimeout,
		Trace:          n.Exit().Trace(), // nil unless the node has trace_file
		Logger:         slog.New(slog.DiscardHandler),
	})
	if err != nil {
		dev.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("test exit: %v", err)
		}
	})
	poll.Until(t, 20*time.Second, "the test exit's router to be up", func() bool {
		select {
		case err := <-done:
			t.Fatalf("test exit stopped: %v", err)
		default:
		}
		return svc.Router() != nil
	})
	e := &Exit{Service: svc, Client: svc.Client(), Router: svc.Router(), Internet: inet}
	waitRegistered(t, n, e.Client)
	return e
}

// Connect connects a mixnet client to n with cfg (the directory filled in)
// and returns once its gateway has registered it: until then the gateway
// drops packets for it.
func Connect(t testing.TB, n *testnet.Net, cfg client.Config) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := client.Connect(ctx, withDirectory(n, cfg))
	if err != nil {
		t.Fatalf("mixnet connect: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	waitRegistered(t, n, c)
	return c
}

// Dial is Connect for code that runs outside the test's goroutine, such as
// a tunnel's redial: it returns an error instead of failing the test (which
// only the test's goroutine may do), gives up when ctx ends instead of after
// a fixed time (a loaded machine takes longer, and the caller knows how long
// is too long), and leaves closing the client to the caller.
func Dial(ctx context.Context, n *testnet.Net, cfg client.Config) (*client.Client, error) {
	c, err := client.Connect(ctx, withDirectory(n, cfg))
	if err != nil {
		return nil, fmt.Errorf("mixnet connect: %w", err)
	}
	for !registered(n, c) {
		select {
		case <-ctx.Done():
			c.Close()
			return nil, fmt.Errorf("waiting for the gateway to register the client: %w", context.Cause(ctx))
		case <-time.After(10 * time.Millisecond):
		}
	}
	return c, nil
}

// withDirectory fills in n's directory (its network file, or its one
// authority) and a quiet logger.
func withDirectory(n *testnet.Net, cfg client.Config) client.Config {
	if n.NetworkFile != "" { // a network of authorities
		cfg.Network = n.Network
	} else {
		cfg.DirectoryURL, cfg.DirectoryKey = n.DirectoryURL, n.DirectoryKey
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg
}

// waitRegistered waits until c's gateway has registered it.
func waitRegistered(t testing.TB, n *testnet.Net, c *client.Client) {
	t.Helper()
	poll.Until(t, 10*time.Second, "the gateway to register the client", func() bool { return registered(n, c) })
}

// registered tells whether c's gateway has registered it.
func registered(n *testnet.Net, c *client.Client) bool {
	for _, nd := range n.Nodes() {
		if nd.Running() && directory.Key(nd.Identity()) == c.Address().Gateway {
			if g := nd.Gateway(); g != nil {
				st, ok := g.Client(c.Address().Identity)
				return ok && st.Connected
			}
		}
	}
	return false
}
