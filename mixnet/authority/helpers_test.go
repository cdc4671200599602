package authority

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/link"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testNode is a fake node: keys, a descriptor, a health endpoint whose
// answers the test switches on and off, and a real link (Noise) listener
// holding the announced Noise key, as a node's mixnet port does.
type testNode struct {
	priv    ed25519.PrivateKey
	desc    directory.Descriptor
	healthy atomic.Bool
	health  *httptest.Server
	noise   link.KeyPair
	// handshakes counts the link handshakes the node's mixnet port completed.
	handshakes atomic.Int64
}

func newKey(t testing.TB) directory.Key {
	t.Helper()
	var k directory.Key
	if _, err := rand.Read(k[:]); err != nil {
		t.Fatal(err)
	}
	return k
}

// newTestNode makes a node offering caps, with Sphinx keys for rotations
// 0 and 1 and a healthy health endpoint.
func newTestNode(t testing.TB, caps directory.Capabilities) *testNode {
	t.Helper()
	return newTestNodeAt(t, caps, "127.0.0.1")
}

// newTestNodeAt is newTestNode with the node's listeners on host (any
// 127.0.0.0/8 address works on Linux, so tests can place nodes in
// different /24s).
func newTestNodeAt(t testing.TB, caps directory.Capabilities, host string) *testNode {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	n := &testNode{priv: priv}
	n.healthy.Store(true)
	n.health = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != directory.PathHealth || !n.healthy.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, `{"status":"ok"}`)
	}))
	n.health.Listener.Close()
	n.health.Listener = listenOn(t, host)
	n.health.Start()
	t.Cleanup(n.health.Close)
	if n.noise, err = link.GenerateKeyPair(rand.Reader); err != nil {
		t.Fatal(err)
	}
	n.noise.KEMKeys = link.NewKEMKeyring() // rotationKEMKeys fills it
	mixnetAddr := serveLink(t, host, n.noise, &n.handshakes)
	n.desc = directory.Descriptor{
		Identity:     directory.Key(pub),
		NoiseKey:     directory.Key(n.noise.Public),
		SphinxKeys:   []directory.SphinxKey{{Rotation: 0, Key: newKey(t)}, {Rotation: 1, Key: newKey(t)}},
		MixnetAddr:   mixnetAddr,
		HTTPAddr:     n.health.Listener.Addr().String(),
		Capabilities: caps,
		Version:      "test-1.0",
		IssuedAt:     time.Now().UTC(),
	}
	if caps.Gateway() {
		ln := listenOn(t, host) // a port of its own: addresses are unique
		n.desc.ClientsAddr = ln.Addr().String()
		ln.Close()
	}
	return n
}

func listenOn(t testing.TB, host string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// serveLink runs a link server holding key on host until the test ends,
// counting completed handshakes, and returns its address. Like a real
// node's mixnet port, it refuses peers it does not know, after the
// handshake.
func serveLink(t testing.TB, host string, key link.KeyPair, handshakes *atomic.Int64) string {
	t.Helper()
	srv, err := link.NewServer(link.ServerConfig{
		Config: link.Config{Static: key, Logger: slog.New(slog.DiscardHandler)},
		Authorize: func([32]byte) error {
			handshakes.Add(1)
			return errors.New("not in the topology")
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ln := listenOn(t, host)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	return ln.Addr().String()
}

// signed returns the node's descriptor, issued at issuedAt, signed.
func (n *testNode) signed(t testing.TB, issuedAt time.Time) directory.SignedDescriptor {
	t.Helper()
	d := n.desc
	d.IssuedAt = issuedAt
	sd, err := directory.SignDescriptor(n.priv, d)
	if err != nil {
		t.Fatal(err)
	}
	return sd
}

func (n *testNode) id() directory.Key { return n.desc.Identity }

var (
	mixOnly  = directory.Capabilities{Mixnode: true}
	entryGW  = directory.Capabilities{Entry: true}
	exitGW   = directory.Capabilities{Entry: true, Exit: true}
	autoNode = directory.Capabilities{Mixnode: true, Entry: true, Exit: true}
)

// fakeClock is a settable clock for tests that drive epochs by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p[:len(p)-1]))
	return len(p), nil
}

// newTestServer starts a directory on a fresh data dir with a fake clock and
// 1-minute epochs and 1-hour descriptor lifetime; tests turn epochs with clock.Advance and s.advance.
// Its nodes all live on 127.0.0.1, so it lifts the per-address and
// per-prefix seat limits unless cfg sets them, as the local network does.
func newTestServer(t testing.TB, cfg Config) (*Server, *fakeClock) {
	t.Helper()
	if cfg.Admission.MaxSeatsPerAddress == 0 {
		cfg.Admission.MaxSeatsPerAddress = -1
	}
	if cfg.Admission.MaxSeatsPerPrefix == 0 {
		cfg.Admission.MaxSeatsPerPrefix = -1
	}
	return newTestServerDefaults(t, cfg)
}

// newTestServerDefaults is newTestServer with the admission settings a
// public network runs (the defaults).
func newTestServerDefaults(t testing.TB, cfg Config) (*Server, *fakeClock) {
	t.Helper()
	clock := newFakeClock()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	if cfg.EpochLength == 0 {
		cfg.EpochLength = time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = clock.Now
	}
	if cfg.DescriptorTTL == 0 {
		cfg.DescriptorTTL = time.Hour // tests that want expiry set it
	}
	cfg.Logger = testLogger(t)
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, clock
}

// registerAll registers nodes directly through the handler.
func registerAll(t testing.TB, s *Server, nodes ...*testNode) {
	t.Helper()
	for _, n := range nodes {
		d := n.desc
		d.IssuedAt = s.cfg.Now()
		sd, err := directory.SignDescriptor(n.priv, d)
		if err != nil {
			t.Fatal(err)
		}
		if _, status, err := s.register(d, sd, s.cfg.Now()); err != nil {
			t.Fatalf("register %s: %d %v", n.id(), status, err)
		}
	}
}

// probeTwice runs two probe rounds, enough for a failing node to be
// excluded with the default MaxConsecutiveFailures.
func probeTwice(t testing.TB, s *Server) {
	t.Helper()
	s.probeRound(context.Background(), nil)
	s.probeRound(context.Background(), nil)
}

// nextEpoch moves the clock to the next epoch boundary and turns the epoch.
func nextEpoch(s *Server, clock *fakeClock) {
	now := clock.Now()
	clock.Advance(s.clock.start(s.clock.epochAt(now) + 1).Sub(now))
	s.advance(clock.Now())
}
