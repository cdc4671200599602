package vpn

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/nym-go/nym/internal/poll"
	"github.com/nym-go/nym/ipr"
	"github.com/nym-go/nym/mixnet/client"
	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/tun"
)

// internetAddr is the test "internet" host: a gVisor stack standing behind
// the exit's TUN.
var internetAddr = netip.MustParseAddr("192.0.2.1")

// testExit is an exit's IP packet router reached through a mixnet client of
// its own, as ipr/exit will run it, over an in-memory internet: the router's
// TUN writes go into a userspace stack, whose answers go back to the router.
type testExit struct {
	mix    *client.Client
	router *ipr.Router
	inet   tun.Device
	net    *tun.Net
}

func startExit(t *testing.T, n *miniNet, lp client.Loopix) *testExit {
	t.Helper()
	mix := connectMixnet(t, n, lp, directory.Key(n.Exit.Identity()))
	inet, inetNet, err := tun.CreateNetstack([]netip.Addr{internetAddr}, nil, 1500)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &testExit{mix: mix, inet: inet, net: inetNet}
	ready := make(chan ipr.SessionKey, 64)
	e.router, err = ipr.New(ipr.Config{
		PayloadCapacity: mix.ReplyCapacity(),
		TUN:             inet,
		Reply: func(key ipr.SessionKey, resp []byte) error {
			rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
			defer rcancel()
			return mix.Reply(rctx, client.AnonymousSenderTag(key), resp)
		},
		Ready: func(key ipr.SessionKey) {
			select {
			case ready <- key:
			default:
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	goroutine := func(f func()) {
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
	}
	goroutine(func() { e.router.Run(ctx) })
	goroutine(func() { // requests from the mixnet
		for {
			select {
			case <-ctx.Done():
				return
			case m, ok := <-mix.Receive():
				if !ok {
					return
				}
				if !m.SenderTag.IsZero() {
					e.router.HandleRequest(ipr.SessionKey(m.SenderTag), m.Data)
				}
			}
		}
	})
	goroutine(func() { // the internet's answers
		bufs, sizes := tun.NewBatch(inet)
		for {
			k, err := inet.Read(bufs, sizes)
			pkts := make([][]byte, k)
			for i := range k {
				pkts[i] = bufs[i][:sizes[i]]
			}
			e.router.FromTUN(pkts)
			if err != nil && ctx.Err() != nil {
				return
			}
		}
	})
	goroutine(func() { // downstream data, pulled as the transport can send
		for {
			select {
			case <-ctx.Done():
				return
			case key := <-ready:
				for {
					b, ok := e.router.NextBundle(key)
					if !ok {
						break
					}
					rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
					err := mix.Reply(rctx, client.AnonymousSenderTag(key), b)
					rcancel()
					if err != nil && ctx.Err() == nil {
						t.Logf("exit reply: %v", err)
					}
				}
			}
		}
	})
	t.Cleanup(func() {
		cancel()
		inet.Close()
		mix.Close()
		wg.Wait()
	})
	return e
}

// connectMixnet connects a client with lp and waits until its gateway has
// registered it (until then the gateway drops packets for it).
func connectMixnet(t *testing.T, n *miniNet, lp client.Loopix, gw directory.Key) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := client.Connect(ctx, client.Config{
		DirectoryURL: n.DirectoryURL,
		DirectoryKey: n.DirectoryKey,
		Loopix:       &lp,
		Gateway:      gw,
		Logger:       quietLogger(),
	})
	if err != nil {
		t.Fatalf("mixnet connect: %v", err)
	}
	waitRegistered(t, n, c)
	return c
}

func waitRegistered(t *testing.T, n *miniNet, c *client.Client) {
	t.Helper()
	poll.Until(t, 10*time.Second, "the gateway to register the client", func() bool {
		for _, nd := range n.nodes {
			if directory.Key(nd.Identity()) == c.Address().Gateway {
				if g := nd.Gateway(); g != nil {
					st, ok := g.Client(c.Address().Identity)
					return ok && st.Connected
				}
			}
		}
		return false
	})
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// directory0 is the gateway VPN clients use: the entry gateway.
func directory0(n *miniNet) directory.Key {
	for _, nd := range n.nodes {
		if r, _ := nd.Role(); r == directory.RoleEntry {
			return directory.Key(nd.Identity())
		}
	}
	return directory.Key{}
}
