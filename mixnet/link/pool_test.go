package link

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/nym-go/nym/internal/leakcheck"
)

func newTestPool(t *testing.T, cfg PoolConfig) *Pool {
	t.Helper()
	if cfg.Static.isZero() {
		cfg.Static = newKey(t)
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	p, err := NewPool(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func TestPoolOneConnPerPeer(t *testing.T) {
	leakcheck.Check(t)
	var gotA, gotB sink
	a := startServer(t, "127.0.0.1:0", ServerConfig{Config: Config{Handler: gotA.handle}})
	b := startServer(t, "127.0.0.1:0", ServerConfig{Config: Config{Handler: gotB.handle}})
	key := newKey(t)
	p := newTestPool(t, PoolConfig{Config: Config{Static: key}})
	peerA, peerB := Peer{a.addr, a.key.Public}, Peer{b.addr, b.key.Public}
	for i := range 100 {
		if !p.Send(peerA, Frame{Kind: KindPacket, Payload: payload(2413, i)}) ||
			!p.Send(peerB, Frame{Kind: KindPacket, Payload: payload(100, i)}) {
			t.Fatalf("Send %d refused", i)
		}
	}
	fa, fb := gotA.waitN(t, 100), gotB.waitN(t, 100)
	for i := range 100 {
		if !equalFrame(fa[i], Frame{Kind: KindPacket, Payload: payload(2413, i)}) ||
			!equalFrame(fb[i], Frame{Kind: KindPacket, Payload: payload(100, i)}) {
			t.Fatalf("frame %d differs or is out of order", i)
		}
	}
	if a.Stats().ConnsOpened.Load() != 1 || b.Stats().ConnsOpened.Load() != 1 {
		t.Fatalf("pool opened %d and %d connections, want one each", a.Stats().ConnsOpened.Load(), b.Stats().ConnsOpened.Load())
	}
	if gotA.conns[0].RemoteStatic() != key.Public {
		t.Fatal("server does not see the pool's static key")
	}
}

func TestPoolReconnectsAfterServerRestart(t *testing.T) {
	leakcheck.Check(t)
	var got sink
	key := newKey(t)
	cfg := ServerConfig{Config: Config{Static: key, Handler: got.handle}}
	first := startServer(t, "127.0.0.1:0", cfg)
	p := newTestPool(t, PoolConfig{BackoffMin: 5 * time.Millisecond, BackoffMax: 40 * time.Millisecond})
	peer := Peer{first.addr, key.Public}
	frame := func(i int) Frame { return Frame{Kind: KindPacket, Payload: payload(2413, i)} }

	for i := range 10 {
		p.Send(peer, frame(i))
	}
	got.waitN(t, 10)

	first.stop()
	// Once a redial has failed, the link is known down and what we send now
	// can only wait in the peer's queue.
	waitFor(t, "a failed redial", func() bool { return p.Stats().DialFailures.Load() > 0 })
	for i := 10; i < 20; i++ {
		if !p.Send(peer, frame(i)) {
			t.Fatalf("frame %d not queued while reconnecting", i)
		}
	}

	startServer(t, first.addr, cfg) // same port, same key
	for i := 20; i < 30; i++ {
		p.Send(peer, frame(i))
	}
	frames := got.waitN(t, 30)
	for i := range 30 {
		if !equalFrame(frames[i], frame(i)) {
			t.Fatalf("frame %d differs or is out of order", i)
		}
	}
	if n := p.Stats().DroppedQueueFull.Load() + p.Stats().DroppedWriteError.Load(); n != 0 {
		t.Fatalf("%d frames dropped", n)
	}
}

func TestPoolQueueBoundWhileUnreachable(t *testing.T) {
	leakcheck.Check(t)
	const queueLen = 4
	p := newTestPool(t, PoolConfig{Config: Config{
		QueueLen: queueLen,
		// A peer that never answers: every connect hangs until its timeout.
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		},
	}})
	peer := Peer{"127.0.0.1:9", newKey(t).Public}
	for i := range queueLen {
		if !p.Send(peer, Frame{Kind: KindPacket, Payload: []byte{byte(i)}}) {
			t.Fatalf("frame %d refused below the bound", i)
		}
	}
	start := time.Now()
	if p.Send(peer, Frame{Kind: KindPacket}) {
		t.Fatal("frame accepted beyond the queue bound")
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Send blocked for %v", d)
	}
	if got := p.Stats().DroppedQueueFull.Load(); got != 1 {
		t.Fatalf("DroppedQueueFull = %d, want 1", got)
	}
	p.Close()
	if got := p.Stats().DroppedClosed.Load(); got != queueLen {
		t.Fatalf("DroppedClosed = %d after Close, want the %d queued frames", got, queueLen)
	}
	if p.Send(peer, Frame{Kind: KindPacket}) {
		t.Fatal("Send accepted after Close")
	}
}

func TestPoolRejectsInvalid(t *testing.T) {
	leakcheck.Check(t)
	p := newTestPool(t, PoolConfig{})
	tests := []struct {
		name string
		peer Peer
		f    Frame
	}{
		{"no key", Peer{Addr: "127.0.0.1:1"}, Frame{Kind: KindPacket}},
		{"no address", Peer{Static: newKey(t).Public}, Frame{Kind: KindPacket}},
		{"bad kind", Peer{"127.0.0.1:1", newKey(t).Public}, Frame{Kind: 0}},
		{"too large", Peer{"127.0.0.1:1", newKey(t).Public}, Frame{Kind: KindPacket, Payload: make([]byte, MaxFramePayload+1)}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if p.Send(tt.peer, tt.f) {
				t.Fatal("accepted")
			}
			if got := p.Stats().DroppedInvalid.Load(); got != uint64(i+1) {
				t.Fatalf("DroppedInvalid = %d, want %d", got, i+1)
			}
		})
	}
}

func TestPoolClosesIdlePeers(t *testing.T) {
	leakcheck.Check(t)
	var got sink
	ts := startServer(t, "127.0.0.1:0", ServerConfig{Config: Config{Handler: got.handle}})
	p := newTestPool(t, PoolConfig{IdleTimeout: 20 * time.Millisecond})
	peer := Peer{ts.addr, ts.key.Public}
	p.Send(peer, Frame{Kind: KindPacket, Payload: []byte("one")})
	got.waitN(t, 1)
	waitFor(t, "idle link to close", func() bool { return ts.Stats().ConnsClosed.Load() == 1 })
	p.mu.RLock()
	n := len(p.peers)
	p.mu.RUnlock()
	if n != 0 {
		t.Fatalf("pool still tracks %d peers", n)
	}
	// The next frame reconnects.
	p.Send(peer, Frame{Kind: KindPacket, Payload: []byte("two")})
	frames := got.waitN(t, 2)
	if string(frames[1].Payload) != "two" || ts.Stats().ConnsOpened.Load() != 2 {
		t.Fatalf("second frame %q over %d connections", frames[1].Payload, ts.Stats().ConnsOpened.Load())
	}
}

func TestPoolWrongKeyCountsHandshakeFailures(t *testing.T) {
	leakcheck.Check(t)
	ts := startServer(t, "127.0.0.1:0", ServerConfig{})
	p := newTestPool(t, PoolConfig{BackoffMin: time.Millisecond, BackoffMax: 4 * time.Millisecond})
	p.Send(Peer{ts.addr, newKey(t).Public}, Frame{Kind: KindPacket})
	waitFor(t, "repeated handshake failures", func() bool { return p.Stats().HandshakeFails.Load() >= 3 })
	if ts.Stats().ConnsOpened.Load() != 0 {
		t.Fatal("server accepted an initiator that expected another key")
	}
}
