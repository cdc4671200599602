package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nym-go/nym/internal/poll"
	"github.com/nym-go/nym/mixnet/gatewire"
	"github.com/nym-go/nym/mixnet/link"
	"github.com/nym-go/nym/mixnet/sphinx"
)

// waitTimeout bounds every poll; generous for -race on a loaded machine,
// never reached when things work.
const waitTimeout = 10 * time.Second

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	poll.Until(t, waitTimeout, what, cond)
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func newKey(t testing.TB) link.KeyPair {
	t.Helper()
	k, err := link.GenerateKeyPair(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// forwarded is one call of Config.Forward.
type forwarded struct {
	hop [32]byte
	pkt []byte
	odd bool
}

// forwarder records Forward calls.
type forwarder struct {
	mu     sync.Mutex
	got    []forwarded
	refuse bool
	// scribble overwrites each packet after copying it, as a mixer that
	// unwraps in place would: Forward owns what it is given.
	scribble bool
}

func (f *forwarder) forward(hop [32]byte, pkt []byte, odd bool) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, forwarded{hop, append([]byte(nil), pkt...), odd})
	if f.scribble {
		clear(pkt)
	}
	return !f.refuse
}

func (f *forwarder) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.got)
}

func (f *forwarder) waitN(t testing.TB, n int) []forwarded {
	t.Helper()
	var got []forwarded
	waitFor(t, fmt.Sprintf("%d forwarded packets", n), func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		got = append([]forwarded(nil), f.got...)
		return len(got) >= n
	})
	return got
}

// testGateway is a Gateway serving on a loopback port.
type testGateway struct {
	*Gateway
	t     *testing.T
	dir   string
	key   link.KeyPair
	addr  string
	reg   *prometheus.Registry
	fwd   *forwarder
	links *link.Stats

	cancel  context.CancelFunc
	done    chan error
	stopped bool
	// quotas: clients dialled from now on see the gateway's Quota messages.
	quotas bool
}

// startGateway serves a Gateway on dir; zero key gets a fresh one. It is
// stopped and closed at cleanup unless the test stops it first.
func startGateway(t *testing.T, dir string, key link.KeyPair, mutate func(*Config)) *testGateway {
	t.Helper()
	tg := newGateway(t, dir, key, mutate)
	tg.serve()
	return tg
}

// newGateway is startGateway without Serve, so a test can set unexported
// knobs or call Deliver first.
func newGateway(t *testing.T, dir string, key link.KeyPair, mutate func(*Config)) *testGateway {
	t.Helper()
	if key.Public == ([32]byte{}) {
		key = newKey(t)
	}
	tg := &testGateway{t: t, dir: dir, key: key, reg: prometheus.NewRegistry(), fwd: &forwarder{}, links: new(link.Stats)}
	cfg := Config{
		Static:     key,
		DataDir:    dir,
		Forward:    tg.fwd.forward,
		Logger:     testLogger(t),
		Registerer: tg.reg,
		LinkStats:  tg.links,
		// Record clients at the handshake, as the tests written before
		// RecordClientsAfter expect; the tests of it set their own.
		RecordClientsAfter: -1,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tg.Gateway = g
	t.Cleanup(tg.stop)
	return tg
}

// serve starts Serve on a loopback port.
func (tg *testGateway) serve() {
	tg.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tg.t.Fatal(err)
	}
	tg.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	tg.cancel, tg.done = cancel, make(chan error, 1)
	go func() { tg.done <- tg.Serve(ctx, ln) }()
}

// stop ends Serve, checks it returned cleanly, and closes the database.
func (tg *testGateway) stop() {
	if tg.stopped {
		return
	}
	tg.stopped = true
	if tg.cancel != nil {
		tg.cancel()
		select {
		case err := <-tg.done:
			if err != nil {
				tg.t.Errorf("Serve: %v", err)
			}
		case <-time.After(waitTimeout):
			tg.t.Fatal("Serve did not return")
		}
	}
	if err := tg.Close(); err != nil {
		tg.t.Errorf("Close: %v", err)
	}
}

// metric reads a counter or gauge from the gateway's registry; labels
// select one series of a vector.
func (tg *testGateway) metric(name string, labels ...string) float64 {
	tg.t.Helper()
	mfs, err := tg.reg.Gather()
	if err != nil {
		tg.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue series
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	tg.t.Fatalf("metric %s %v not found", name, labels)
	return 0
}

func (tg *testGateway) waitMetric(name string, want float64, labels ...string) {
	tg.t.Helper()
	waitFor(tg.t, fmt.Sprintf("%s%v = %v", name, labels, want), func() bool { return tg.metric(name, labels...) >= want })
}

// deliver hands the gateway a final-hop packet as the mixer would.
func (tg *testGateway) deliver(to [32]byte, id [16]byte, payload []byte) {
	tg.Deliver(sphinx.Processed{Final: true, Destination: sphinx.Destination{Address: to, ID: id}, Payload: payload})
}

// testClient is a client speaking gatewire over a real link.
type testClient struct {
	t    *testing.T
	key  link.KeyPair
	conn *link.Conn
	msgs chan any // parsed gateway messages, in arrival order
	// autoConfirm sends Received for every Deliver, as a real client does.
	autoConfirm bool
	// quotas keeps the gateway's Quota messages in msgs; without it they
	// are left out, for the tests that do not pay.
	quotas bool
}

// dial connects a client with key (zero: a fresh one) to tg and waits
// until the gateway has registered it.
func (tg *testGateway) dial(key link.KeyPair, autoConfirm bool) *testClient {
	tg.t.Helper()
	tc := tg.dialNoWait(key, autoConfirm)
	waitFor(tg.t, "client registered", func() bool {
		st, ok := tg.Client(tc.addr())
		return ok && st.Connected
	})
	return tc
}

// dialNoWait connects a client without waiting for the gateway to accept it.
func (tg *testGateway) dialNoWait(key link.KeyPair, autoConfirm bool) *testClient {
	tg.t.Helper()
	return tg.dialFrom("", key, autoConfirm)
}

// dialFrom is dialNoWait from the loopback address local ("" for any):
// Linux routes all of 127.0.0.0/8 to lo, so one test can play several
// hosts.
func (tg *testGateway) dialFrom(local string, key link.KeyPair, autoConfirm bool) *testClient {
	tg.t.Helper()
	var d net.Dialer
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	if key.Public == ([32]byte{}) {
		key = newKey(tg.t)
	}
	tc := &testClient{t: tg.t, key: key, msgs: make(chan any, 4096), autoConfirm: autoConfirm, quotas: tg.quotas}
	conn, err := link.Dial(context.Background(), tg.addr, tg.key.Public, link.Config{
		Static:  key,
		Handler: tc.handle,
		Logger:  testLogger(tg.t),

		DialContext: d.DialContext,
	})
	if err != nil {
		tg.t.Fatalf("dial gateway: %v", err)
	}
	tc.conn = conn
	tg.t.Cleanup(conn.Close)
	return tc
}

func (tc *testClient) handle(c *link.Conn, f link.Frame) error {
	msg, err := gatewire.Parse(f.Payload)
	if err != nil {
		return fmt.Errorf("client got a malformed message: %w", err)
	}
	if _, ok := msg.(*gatewire.Quota); ok && !tc.quotas {
		return nil
	}
	if d, ok := msg.(*gatewire.Deliver); ok && tc.autoConfirm {
		c.Send(link.Frame{Kind: link.KindClient, Payload: (&gatewire.Received{Seq: d.Seq}).AppendBinary(nil)})
	}
	select {
	case tc.msgs <- msg:
	default:
		return fmt.Errorf("test client buffer full")
	}
	return nil
}

func (tc *testClient) addr() [32]byte { return tc.key.Public }

// sendRaw sends a client frame with this payload.
func (tc *testClient) sendRaw(kind link.Kind, payload []byte) {
	tc.t.Helper()
	if !tc.conn.Send(link.Frame{Kind: kind, Payload: payload}) {
		tc.t.Fatal("client could not queue a frame")
	}
}

func (tc *testClient) confirm(seq uint64) {
	tc.sendRaw(link.KindClient, (&gatewire.Received{Seq: seq}).AppendBinary(nil))
}

// next returns the next message from the gateway.
func (tc *testClient) next() any {
	tc.t.Helper()
	select {
	case m := <-tc.msgs:
		return m
	case <-time.After(waitTimeout):
		tc.t.Fatal("timed out waiting for a message from the gateway")
		return nil
	}
}

func (tc *testClient) nextDeliver() *gatewire.Deliver {
	tc.t.Helper()
	m := tc.next()
	d, ok := m.(*gatewire.Deliver)
	if !ok {
		tc.t.Fatalf("got %#v, want a Deliver", m)
	}
	return d
}

func (tc *testClient) nextStatus() *gatewire.Status {
	tc.t.Helper()
	m := tc.next()
	s, ok := m.(*gatewire.Status)
	if !ok {
		tc.t.Fatalf("got %#v, want a Status", m)
	}
	return s
}

// waitClosed waits for the gateway to end the connection.
func (tc *testClient) waitClosed() {
	tc.t.Helper()
	select {
	case <-tc.conn.Done():
	case <-time.After(waitTimeout):
		tc.t.Fatal("gateway did not close the connection")
	}
}

// disconnect closes the client's end and waits until the gateway noticed.
func (tc *testClient) disconnect(tg *testGateway) {
	tc.t.Helper()
	tc.conn.Close()
	waitFor(tc.t, "gateway to see the client leave", func() bool {
		st, ok := tg.Client(tc.addr())
		return ok && !st.Connected
	})
}

func id(n byte) [16]byte { return [16]byte{n, 0xaa} }

func payloadN(n int) []byte { return []byte(fmt.Sprintf("payload %04d", n)) }
