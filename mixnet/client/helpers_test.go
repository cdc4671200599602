package client

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nym-go/nym/internal/poll"
	"github.com/nym-go/nym/internal/testnet"
	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/gateway"
	"github.com/nym-go/nym/mixnet/link"
)

// fast is a Loopix setting with every delay and stream off: tests that check
// what arrives, not how it is shaped, run at loopback speed.
var fast = Loopix{}

// testLogger sends warnings and errors to the test log, until the test ends.
func testLogger(t testing.TB) *slog.Logger {
	w := &testLogWriter{t: t}
	t.Cleanup(w.stop)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testLogWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Logf("%s", p)
	}
	return len(p), nil
}

func (w *testLogWriter) stop() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

var _ io.Writer = (*testLogWriter)(nil)

// connect starts a client on n with the fast setting unless mod changes it,
// and closes it when the test ends.
func connect(t testing.TB, n *testnet.Net, mod func(*Config)) *Client {
	t.Helper()
	lp := fast
	cfg := Config{
		DirectoryURL: n.DirectoryURL,
		DirectoryKey: n.DirectoryKey,
		Loopix:       &lp,
		Logger:       testLogger(t),
	}
	if mod != nil {
		mod(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := Connect(ctx, cfg)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	waitRegistered(t, c, func() *gateway.Gateway {
		for _, nd := range n.Nodes() {
			if nd.Running() && directory.Key(nd.Identity()) == c.Address().Gateway {
				return nd.Gateway()
			}
		}
		return nil
	})
	return c
}

// waitRegistered waits until c's gateway has registered c. Connect returns
// when the client's side of the handshake is done; the gateway finishes its
// side a moment later, and until then it drops packets for c (having sent
// their acks).
func waitRegistered(t testing.TB, c *Client, gw func() *gateway.Gateway) {
	t.Helper()
	waitFor(t, 5*time.Second, "the gateway to register the client", func() bool {
		g := gw()
		if g == nil {
			return false
		}
		st, ok := g.Client(c.Address().Identity)
		return ok && st.Connected
	})
}

// receive waits for the next message on c.
func receive(t testing.TB, c *Client, timeout time.Duration) Message {
	t.Helper()
	select {
	case m, ok := <-c.Receive():
		if !ok {
			t.Fatal("receive channel closed")
		}
		return m
	case <-time.After(timeout):
		t.Fatalf("no message within %v; stats %+v", timeout, c.Stats())
	}
	return Message{}
}

// expectNothing checks that no message arrives on c for d.
func expectNothing(t testing.TB, c *Client, d time.Duration) {
	t.Helper()
	select {
	case m := <-c.Receive():
		t.Fatalf("unexpected message of %d bytes", len(m.Data))
	case <-time.After(d):
	}
}

// flush waits until everything c sent is acknowledged.
func flush(t testing.TB, c *Client, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := c.Flush(ctx); err != nil {
		t.Fatalf("%v; stats %+v", err, c.Stats())
	}
}

// flushWhileAcked is flush without a fixed deadline: it waits for as long
// as c's fragments keep being acknowledged, and fails once none was for
// stall.
func flushWhileAcked(t testing.TB, c *Client, stall time.Duration) {
	t.Helper()
	ctx, cancel := poll.WithProgress(context.Background(), stall, func() uint64 { return c.Stats().AcksReceived })
	defer cancel()
	if err := c.Flush(ctx); err != nil {
		t.Fatalf("%v (%v); stats %+v", err, context.Cause(ctx), c.Stats())
	}
}

// nodeIndex returns the testnet index of the node with identity id.
func nodeIndex(t testing.TB, n *testnet.Net, id directory.Key) int {
	t.Helper()
	for _, nd := range n.Nodes() {
		if nd.Running() && directory.Key(nd.Identity()) == id {
			return nd.Index
		}
	}
	t.Fatalf("no running node %s", id)
	return -1
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	poll.Until(t, timeout, what, cond)
}

func newIdentity(t testing.TB) *link.KeyPair {
	kp, err := link.GenerateKeyPair(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &kp
}
