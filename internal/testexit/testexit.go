// Package testexit runs an exit's IP packet router for tests, as ipr/exit
// runs it but without root: an ipr.Router behind a mixnet client of its own
// on the network's exit gateway, over an in-memory internet (a gVisor stack
// whose packets are the router's TUN).
package testexit

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nym-go/nym/internal/poll"
	"github.com/nym-go/nym/internal/testnet"
	"github.com/nym-go/nym/ipr"
	"github.com/nym-go/nym/mixnet/client"
	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/link"
	"github.com/nym-go/nym/tun"
)

// DefaultReplyTimeout bounds how long a control reply waits for the
// sender's SURBs, unless SetReplyTimeout says otherwise.
const DefaultReplyTimeout = 5 * time.Second

// Exit is a running test exit.
type Exit struct {
	Client   *client.Client
	Router   *ipr.Router
	Internet *tun.Net // the internet's side: serve things on it
	// ReplyTimeouts counts control replies that waited their timeout for
	// SURBs in vain.
	ReplyTimeouts atomic.Uint64
	replyTimeout  atomic.Int64
}

// SetReplyTimeout sets how long later control replies wait for SURBs.
func (e *Exit) SetReplyTimeout(d time.Duration) { e.replyTimeout.Store(int64(d)) }

// Start runs a router with identity id (nil: a fresh one) at n's exit
// gateway; the internet answers at the given addresses. Everything stops
// when the test ends.
func Start(t testing.TB, n *testnet.Net, id *link.KeyPair, lp client.Loopix, internet ...netip.Addr) *Exit {
	t.Helper()
	mix := Connect(t, n, client.Config{Identity: id, Loopix: &lp, Gateway: directory.Key(n.Exit().Identity())})
	dev, inetNet, err := tun.CreateNetstack(internet, nil, 1500)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &Exit{Client: mix, Internet: inetNet}
	e.SetReplyTimeout(DefaultReplyTimeout)
	ready := make(chan ipr.SessionKey, 64)
	e.Router, err = ipr.New(ipr.Config{
		PayloadCapacity: mix.ReplyCapacity(),
		TUN:             dev,
		// As ipr/exit wires it: a sender without SURBs is not waited for.
		CanReply: func(key ipr.SessionKey) bool { return mix.ReplySURBs(client.AnonymousSenderTag(key)) > 0 },
		Reply: func(key ipr.SessionKey, resp []byte) error {
			rctx, rcancel := context.WithTimeout(ctx, time.Duration(e.replyTimeout.Load()))
			defer rcancel()
			err := mix.Reply(rctx, client.AnonymousSenderTag(key), resp)
			if errors.Is(err, context.DeadlineExceeded) {
				e.ReplyTimeouts.Add(1)
			}
			return err
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
	wg.Go(func() { e.Router.Run(ctx) })
	wg.Go(func() { // requests from the mixnet
		for {
			select {
			case <-ctx.Done():
				return
			case m, ok := <-mix.Receive():
				if !ok {
					return
				}
				if !m.SenderTag.IsZero() {
					e.Router.Submit(ipr.SessionKey(m.SenderTag), m.Data)
				}
			}
		}
	})
	wg.Go(func() { // the internet's answers
		bufs, sizes := tun.NewBatch(dev)
		for {
			k, err := dev.Read(bufs, sizes)
			pkts := make([][]byte, k)
			for i := range k {
				pkts[i] = bufs[i][:sizes[i]]
			}
			e.Router.FromTUN(pkts)
			if err != nil && ctx.Err() != nil {
				return
			}
		}
	})
	wg.Go(func() { // downstream data, pulled as the transport can send it
		for {
			select {
			case <-ctx.Done():
				return
			case key := <-ready:
				for {
					b, ok := e.Router.NextBundle(key)
					if !ok {
						break
					}
					rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
					err := mix.Reply(rctx, client.AnonymousSenderTag(key), b)
					rcancel()
					if err != nil && ctx.Err() == nil {
						t.Logf("test exit reply: %v", err)
					}
				}
			}
		}
	})
	t.Cleanup(func() {
		cancel()
		e.Router.Shutdown() // waits for the request workers; their replies fail at once now
		dev.Close()
		mix.Close()
		wg.Wait()
	})
	return e
}

// Connect connects a mixnet client to n with cfg (the directory filled in)
// and returns once its gateway has registered it: until then the gateway
// drops packets for it.
func Connect(t testing.TB, n *testnet.Net, cfg client.Config) *client.Client {
	t.Helper()
	cfg.DirectoryURL, cfg.DirectoryKey = n.DirectoryURL, n.DirectoryKey
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := client.Connect(ctx, cfg)
	if err != nil {
		t.Fatalf("mixnet connect: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	poll.Until(t, 10*time.Second, "the gateway to register the client", func() bool {
		for _, nd := range n.Nodes() {
			if nd.Running() && directory.Key(nd.Identity()) == c.Address().Gateway {
				if g := nd.Gateway(); g != nil {
					st, ok := g.Client(c.Address().Identity)
					return ok && st.Connected
				}
			}
		}
		return false
	})
	return c
}
