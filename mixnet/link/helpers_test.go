package link

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/nym-go/nym/internal/poll"
)

// waitTimeout bounds every poll in these tests; generous for -race on a
// loaded machine, never reached when things work.
const waitTimeout = 10 * time.Second

// waitFor polls cond until it holds or waitTimeout passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	poll.Until(t, waitTimeout, what, cond)
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func newKey(t testing.TB) KeyPair {
	t.Helper()
	k, err := GenerateKeyPair(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// sink collects frames delivered to a Handler and lets a test wait for them.
type sink struct {
	mu     sync.Mutex
	frames []Frame
	conns  []*Conn
}

func (s *sink) handle(c *Conn, f Frame) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.frames = append(s.frames, f)
	s.conns = append(s.conns, c)
	return nil
}

func (s *sink) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.frames)
}

func (s *sink) snapshot() []Frame {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Frame(nil), s.frames...)
}

func (s *sink) waitN(t testing.TB, n int) []Frame {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d frames", n), func() bool { return s.len() >= n })
	return s.snapshot()
}

// testServer is a Server on a loopback port, stopped at test cleanup.
type testServer struct {
	*Server
	t      *testing.T
	key    KeyPair
	addr   string
	cancel context.CancelFunc
	done   chan error
}

// startServer serves cfg on addr ("127.0.0.1:0" for any port). Zero Static
// gets a fresh key.
func startServer(t *testing.T, addr string, cfg ServerConfig) *testServer {
	t.Helper()
	if cfg.Static.isZero() {
		cfg.Static = newKey(t)
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testServer{Server: srv, t: t, key: cfg.Static, addr: ln.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	go func() { ts.done <- srv.Serve(ctx, ln) }()
	t.Cleanup(ts.stop)
	return ts
}

// stop ends Serve and waits for it; safe to call twice.
func (ts *testServer) stop() {
	ts.cancel()
	if err, ok := <-ts.done; ok {
		close(ts.done)
		if err != nil {
			ts.t.Errorf("Serve returned %v", err)
		}
	}
}

// dialTest dials ts with a fresh client key and closes the Conn at cleanup.
func dialTest(t *testing.T, ts *testServer, cfg Config) *Conn {
	t.Helper()
	if cfg.Static.isZero() {
		cfg.Static = newKey(t)
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	c, err := Dial(context.Background(), ts.addr, ts.key.Public, cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// payload returns n bytes that differ per seq, so reordering or corruption
// shows.
func payload(n, seq int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(seq*7 + i)
	}
	return b
}

func equalFrame(a, b Frame) bool {
	return a.Kind == b.Kind && a.KeyParity == b.KeyParity && bytes.Equal(a.Payload, b.Payload)
}

// rawHandshake completes a real initiator handshake with the server and
// returns the socket and session, so a test can send arbitrary messages.
func rawHandshake(t *testing.T, ts *testServer, client KeyPair) (net.Conn, session) {
	t.Helper()
	nc, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	sess, err := initiatorHandshake(context.Background(), nc, client, ts.key.Public, nil, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return nc, sess
}

// expectClosedByPeer reads until the peer closes nc and fails if that does
// not happen in time.
func expectClosedByPeer(t *testing.T, nc net.Conn) {
	t.Helper()
	nc.SetReadDeadline(time.Now().Add(waitTimeout))
	buf := make([]byte, 1024)
	for {
		_, err := nc.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("server did not close the connection")
		}
		return
	}
}
