package router

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/nym-go/nym/internal/testpkt"
	"github.com/nym-go/nym/ipr"
	"github.com/nym-go/nym/mixnet/sphinx"
	"github.com/nym-go/nym/tun/ippkt"
)

// memTUN is an in-memory TUN that records every packet written to it.
type memTUN struct {
	mu   sync.Mutex
	pkts [][]byte
	fail error
}

func (m *memTUN) Write(pkts [][]byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	for _, p := range pkts {
		m.pkts = append(m.pkts, bytes.Clone(p)) // Write must not keep the caller's slices
	}
	return nil
}

func (m *memTUN) take() [][]byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.pkts
	m.pkts = nil
	return p
}

// t0 is the tests' epoch.
var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// fakeClock is the router's clock in tests.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	return c.now
}

// testExit is a Router with an in-memory TUN, a fake clock, recorded
// replies and the sessions' streams, which the test pulls from.
type testExit struct {
	t       testing.TB
	r       *Router
	tun     *memTUN
	clock   *fakeClock
	mu      sync.Mutex
	resps   map[SessionKey][]ipr.Response
	streams map[SessionKey]*memStream // the last stream opened for each tag
	refuse  map[SessionKey]bool       // Reply fails, as with no SURB left
}

// memStream is a session's downstream stream as a transport holds it: the
// test pulls from it, as the transport would with a SURB in hand.
type memStream struct {
	e      *testExit
	d      Downstream
	wakes  int // guarded by e.mu
	closed bool
}

func (m *memStream) Wake() {
	m.e.mu.Lock()
	m.wakes++
	m.e.mu.Unlock()
}

func (m *memStream) Close() error {
	m.e.mu.Lock()
	defer m.e.mu.Unlock()
	if m.closed {
		m.e.t.Errorf("stream of %v closed twice", m.d.Key())
	}
	m.closed = true
	return nil
}

// stream returns the stream last opened for key.
func (e *testExit) stream(key SessionKey) *memStream {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.streams[key]
}

func (e *testExit) wakes(key SessionKey) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	if st := e.streams[key]; st != nil {
		return st.wakes
	}
	return 0
}

const testCapacity = sphinx.RegularPayload - 480 // about what a reply carries after the client's framing

func newTestExit(t testing.TB, mod func(*Config)) *testExit {
	t.Helper()
	e := &testExit{
		t: t, tun: &memTUN{}, clock: &fakeClock{now: t0},
		resps: map[SessionKey][]ipr.Response{}, streams: map[SessionKey]*memStream{}, refuse: map[SessionKey]bool{},
	}
	cfg := Config{
		PayloadCapacity: testCapacity,
		TUN:             e.tun,
		Reply: func(key SessionKey, b []byte) error {
			resp, err := ipr.ParseResponse(b)
			if err != nil {
				t.Errorf("router sent a response that does not parse: %v", err)
				return err
			}
			e.mu.Lock()
			defer e.mu.Unlock()
			if e.refuse[key] {
				return errors.New("no SURB")
			}
			e.resps[key] = append(e.resps[key], resp)
			return nil
		},
		OpenStream: func(key SessionKey, d Downstream) (Stream, error) {
			st := &memStream{e: e, d: d}
			e.mu.Lock()
			e.streams[key] = st
			e.mu.Unlock()
			return st, nil
		},
		Pool: newAddrPool(firstHost, lastHost, rand.New(rand.NewPCG(7, 8))),
		Now:  e.clock.Now,
	}
	if mod != nil {
		mod(&cfg)
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.r = r
	return e
}

// responses takes the responses sent to key so far.
func (e *testExit) responses(key SessionKey) []ipr.Response {
	e.mu.Lock()
	defer e.mu.Unlock()
	r := e.resps[key]
	delete(e.resps, key)
	return r
}

func (e *testExit) lastResponse(key SessionKey) ipr.Response {
	e.t.Helper()
	rs := e.responses(key)
	if len(rs) != 1 {
		e.t.Fatalf("session %v got %d responses, want 1: %+v", key, len(rs), rs)
	}
	return rs[0]
}

// testClient speaks to the router as a VPN client would.
type testClient struct {
	e     *testExit
	key   SessionKey
	nonce [ipr.NonceSize]byte
	addrs ipr.AddrPair
	seq   uint64
}

func (e *testExit) client(id byte) *testClient {
	c := &testClient{e: e}
	c.key[0], c.nonce[0] = id, id
	c.nonce[1] = 0xee
	return c
}

func (c *testClient) send(req ipr.Request) {
	c.e.t.Helper()
	b, err := ipr.MarshalRequest(req)
	if err != nil {
		c.e.t.Fatal(err)
	}
	c.e.r.HandleRequest(c.key, b)
}

func (c *testClient) connect() ipr.Response {
	c.e.t.Helper()
	c.send(&ipr.Connect{RequestID: 42, Nonce: c.nonce})
	resp := c.e.lastResponse(c.key)
	if ok, isOK := resp.(*ipr.ConnectOK); isOK {
		if ok.RequestID != 42 || int(ok.MTU) != ipr.MaxIPPacket(testCapacity) {
			c.e.t.Fatalf("ConnectOK %+v", ok)
		}
		c.addrs = ok.Addrs
	}
	return resp
}

func (c *testClient) mustConnect() {
	c.e.t.Helper()
	if resp, ok := c.connect().(*ipr.ConnectOK); !ok {
		c.e.t.Fatalf("connect: %+v", resp)
	}
}

// dataAt sends one bundle of pkts with sequence number seq.
func (c *testClient) dataAt(seq uint64, pkts ...[]byte) {
	c.e.t.Helper()
	enc := ipr.NewBundleEncoder(1 << 16)
	for _, p := range pkts {
		if err := enc.Add(p); err != nil {
			c.e.t.Fatal(err)
		}
	}
	c.send(&ipr.DataUp{Seq: seq, Bundle: enc.Bytes()})
}

func (c *testClient) data(pkts ...[]byte) {
	c.e.t.Helper()
	c.dataAt(c.seq, pkts...)
	c.seq++
}

// pullOne pulls c's next downstream response from its stream, into a
// buffer of the capacity the router was promised.
func (c *testClient) pullOne() (ipr.Response, bool) {
	c.e.t.Helper()
	st := c.e.stream(c.key)
	if st == nil {
		return nil, false
	}
	buf := make([]byte, 0, testCapacity)
	b, ok := st.d.Pull(buf)
	if !ok {
		return nil, false
	}
	if len(b) > testCapacity || &b[:1][0] != &buf[:1][0] {
		c.e.t.Fatalf("response of %d bytes not written in place into the %d bytes offered", len(b), testCapacity)
	}
	resp, err := ipr.ParseResponse(b)
	if err != nil {
		c.e.t.Fatal(err)
	}
	return resp, true
}

// pull takes every downstream bundle waiting for c.
func (c *testClient) pull() []*ipr.DataDown {
	c.e.t.Helper()
	var out []*ipr.DataDown
	for {
		resp, ok := c.pullOne()
		if !ok {
			return out
		}
		d, isData := resp.(*ipr.DataDown)
		if !isData {
			c.e.t.Fatalf("pulled %T %+v, want Data", resp, resp)
		}
		out = append(out, d)
	}
}

func (c *testClient) v4(t *testing.T, dst string, port uint16, payload string) []byte {
	return testpkt.IPv4(t, c.addrs.V4, netip.MustParseAddr(dst), ippkt.ProtoUDP, port, []byte(payload))
}

func (c *testClient) v6(t *testing.T, dst string, port uint16, payload string) []byte {
	return testpkt.IPv6(t, c.addrs.V6, netip.MustParseAddr(dst), ippkt.ProtoUDP, port, []byte(payload))
}

func samePackets(t *testing.T, got, want [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d packets, want %d", len(got), len(want))
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			h, _ := ipr.ParseHeader(got[i])
			t.Fatalf("packet %d differs: got %v → %v", i, h.Src, h.Dst)
		}
	}
}

func TestRouterEndToEnd(t *testing.T) {
	e := newTestExit(t, nil)
	c := e.client(1)
	c.mustConnect()
	if !ipr.ClientNetV4.Contains(c.addrs.V4) || c.addrs.V4 == ipr.RouterIPv4 || !ipr.ClientNetV6.Contains(c.addrs.V6) {
		t.Fatalf("addresses %v", c.addrs)
	}
	if got, ok := e.r.SessionAddrs(c.key); !ok || got != c.addrs {
		t.Fatalf("SessionAddrs = %v, %v", got, ok)
	}

	// Upstream: bundles sent 0, 1, 2 arrive 0, 2, 1; the TUN sees 0, 1, 2.
	p := [][]byte{
		c.v4(t, "192.0.2.1", 53, "first"),
		c.v6(t, "2001:db8::1", 443, "second"),
		c.v4(t, "192.0.2.1", 53, "third"),
		c.v4(t, "198.51.100.7", 123, "fourth"),
	}
	c.dataAt(0, p[0])
	c.dataAt(2, p[3])
	if got := e.tun.take(); len(got) != 1 {
		t.Fatalf("%d packets on the TUN before the gap filled, want 1", len(got))
	}
	c.dataAt(1, p[1], p[2])
	samePackets(t, e.tun.take(), p[1:])

	// Downstream: answers from the internet to both addresses come back in
	// Data responses, in order, with sequence numbers from 0.
	var down [][]byte
	for i := range 40 {
		down = append(down,
			testpkt.IPv4(t, netip.MustParseAddr("192.0.2.1"), c.addrs.V4, ippkt.ProtoUDP, 40000, bytes.Repeat([]byte{byte(i)}, 300)),
			testpkt.IPv6(t, netip.MustParseAddr("2001:db8::1"), c.addrs.V6, ippkt.ProtoTCP, 40000, bytes.Repeat([]byte{byte(i)}, 200)))
	}
	stray := testpkt.IPv4(t, netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("10.0.9.9"), ippkt.ProtoUDP, 1, nil)
	before := e.wakes(c.key)
	e.r.FromTUN(append(down[:len(down):len(down)], stray))
	if n := e.wakes(c.key) - before; n != 1 {
		t.Fatalf("stream woken %d times for one batch, want 1", n)
	}
	bundles := c.pull()
	var got [][]byte
	for i, b := range bundles {
		if b.Seq != uint64(i) {
			t.Fatalf("bundle %d has seq %d", i, b.Seq)
		}
		// Backlog estimates from bytes; packing may need one bundle more.
		if more := len(bundles) - 1 - i; int(b.Backlog) > more || int(b.Backlog) < more-1 {
			t.Fatalf("bundle %d's backlog %d, then %d more came", i, b.Backlog, more)
		}
		pkts, bad := ipr.SplitBundle(b.Bundle, nil)
		if bad != 0 {
			t.Fatalf("bundle %d: %d malformed", i, bad)
		}
		got = append(got, pkts...)
	}
	// Flow queueing interleaves the two flows; each keeps its order.
	byVersion := func(pkts [][]byte) (v4, v6 [][]byte) {
		for _, p := range pkts {
			if p[0]>>4 == 4 {
				v4 = append(v4, p)
			} else {
				v6 = append(v6, p)
			}
		}
		return v4, v6
	}
	got4, got6 := byVersion(got)
	want4, want6 := byVersion(down)
	samePackets(t, got4, want4)
	samePackets(t, got6, want6)
	if minBundles := (40*(300+28+2) + 40*(200+60+2) + testCapacity - 1) / testCapacity; len(bundles) > minBundles+1 {
		t.Fatalf("%d bundles for %d packets: they are not filled", len(bundles), len(down))
	}

	s := e.r.Stats()
	if s.Sessions != 1 || s.PacketsUp != 4 || s.PacketsDown != 80 || s.Drops[DropNoSession] != 1 ||
		s.Reorder.Reordered != 1 || s.BundlesDown != uint64(len(bundles)) || s.BundlesUp != 3 {
		t.Fatalf("stats %+v", s)
	}
}

func TestRouterDropsSpoofedSources(t *testing.T) {
	e := newTestExit(t, nil)
	a, b := e.client(1), e.client(2)
	a.mustConnect()
	b.mustConnect()
	good := a.v4(t, "192.0.2.1", 53, "mine")
	spoofV4 := testpkt.IPv4(t, b.addrs.V4, netip.MustParseAddr("192.0.2.1"), ippkt.ProtoUDP, 53, []byte("b's address"))
	spoofV6 := testpkt.IPv6(t, netip.MustParseAddr("2001:db8::66"), netip.MustParseAddr("2001:db8::1"), ippkt.ProtoUDP, 53, nil)
	wrongFamily := testpkt.IPv4(t, netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("192.0.2.1"), ippkt.ProtoUDP, 53, nil)
	a.data(spoofV4, good, spoofV6, wrongFamily)
	samePackets(t, e.tun.take(), [][]byte{good})
	if n := e.r.Stats().Drops[DropSpoofed]; n != 3 {
		t.Fatalf("spoofed drops %d, want 3", n)
	}
}

func TestRouterReportsPolicyRefusal(t *testing.T) {
	var asked []netip.AddrPort
	e := newTestExit(t, func(c *Config) {
		c.Policy = func(dst netip.AddrPort, proto uint8) (bool, string) {
			asked = append(asked, dst)
			if dst.Port() == 25 && proto == ippkt.ProtoTCP {
				return false, "SMTP is not allowed from this exit"
			}
			return true, ""
		}
	})
	c := e.client(1)
	c.mustConnect()
	smtp := testpkt.IPv4(t, c.addrs.V4, netip.MustParseAddr("192.0.2.25"), ippkt.ProtoTCP, 25, nil)
	web := testpkt.IPv4(t, c.addrs.V4, netip.MustParseAddr("192.0.2.80"), ippkt.ProtoTCP, 443, nil)
	c.data(smtp, web)
	samePackets(t, e.tun.take(), [][]byte{web})
	info, ok := e.lastResponse(c.key).(*ipr.Info)
	if !ok || info.Code != ipr.InfoPolicyRefused || info.Dest != netip.MustParseAddrPort("192.0.2.25:25") ||
		info.Proto != ippkt.ProtoTCP || info.Text != "SMTP is not allowed from this exit" {
		t.Fatalf("info %+v", info)
	}
	if len(asked) != 2 {
		t.Fatalf("policy asked %d times", len(asked))
	}

	// A second refusal within InfoInterval is counted but not reported:
	// every Info costs the client a SURB.
	e.clock.advance(500 * time.Millisecond)
	c.data(smtp)
	if rs := e.responses(c.key); len(rs) != 0 {
		t.Fatalf("second Info within the interval: %+v", rs)
	}
	e.clock.advance(500 * time.Millisecond)
	c.data(smtp)
	if _, ok := e.lastResponse(c.key).(*ipr.Info); !ok {
		t.Fatal("no Info after the interval")
	}
	if s := e.r.Stats(); s.PolicyRefusals != 3 || s.Drops[DropPolicy] != 3 || s.PolicyInfosSent != 2 {
		t.Fatalf("stats %+v", s)
	}
}

func TestRouterIdleSessionExpiresAndAddressIsReused(t *testing.T) {
	e := newTestExit(t, func(c *Config) { c.Pool = newAddrPool(firstHost, firstHost, nil) })
	a, b := e.client(1), e.client(2)
	a.mustConnect()
	if fail, ok := b.connect().(*ipr.ConnectFail); !ok || fail.Reason != ipr.FailNoFreeAddress {
		t.Fatalf("second client on a one-address pool: %+v", fail)
	}

	// Requests keep a session alive; downstream traffic does not.
	e.r.Tick(e.clock.advance(50 * time.Second))
	a.send(&ipr.Ping{ID: 1})
	if pong, ok := e.lastResponse(a.key).(*ipr.Pong); !ok || pong.ID != 1 {
		t.Fatalf("pong %+v", pong)
	}
	e.r.Tick(e.clock.advance(59 * time.Second))
	if e.r.Stats().Sessions != 1 {
		t.Fatal("session ended before its idle timeout")
	}
	e.r.FromTUN([][]byte{testpkt.UDP4(t, "192.0.2.1", a.addrs.V4.String(), 1, "late answer")})
	e.r.Tick(e.clock.advance(time.Second))
	if d, ok := e.lastResponse(a.key).(*ipr.UnrequestedDisconnect); !ok || d.Reason != ipr.ReasonIdle {
		t.Fatalf("expired session told %+v", d)
	}
	s := e.r.Stats()
	if s.Sessions != 0 || s.SessionsExpired != 1 || s.Drops[DropSessionClosed] != 1 {
		t.Fatalf("stats %+v", s)
	}
	if st := e.stream(a.key); !st.closed {
		t.Fatal("an expired session's stream is still open")
	}
	if _, ok := a.pullOne(); ok {
		t.Fatal("an expired session still has bundles")
	}

	// Its address goes to the next client, once its quarantine is over.
	old := a.addrs
	if fail, ok := b.connect().(*ipr.ConnectFail); !ok || fail.Reason != ipr.FailNoFreeAddress {
		t.Fatalf("connect during the quarantine of the only address: %+v", fail)
	}
	e.clock.advance(DefaultAddrQuarantine)
	b.mustConnect()
	if b.addrs != old {
		t.Fatalf("new client got %v, want the freed %v", b.addrs, old)
	}
	// The old client's data now earns it a NotConnected.
	a.data(a.v4(t, "192.0.2.1", 53, "hello?"))
	if d, ok := e.lastResponse(a.key).(*ipr.UnrequestedDisconnect); !ok || d.Reason != ipr.ReasonNotConnected {
		t.Fatalf("data without a session: %+v", d)
	}
	if len(e.tun.take()) != 0 {
		t.Fatal("data from a dead session reached the TUN")
	}
}

func TestRouterReconnect(t *testing.T) {
	e := newTestExit(t, nil)
	a := e.client(1)
	a.mustConnect()
	first := a.addrs

	// A retried Connect (its ConnectOK lost) gets the same answer.
	a.mustConnect()
	if a.addrs != first {
		t.Fatalf("retry got %v, want %v", a.addrs, first)
	}
	// Another nonce from the same sender tag is another client.
	imposter := *a
	imposter.nonce[5] = 1
	if fail, ok := imposter.connect().(*ipr.ConnectFail); !ok || fail.Reason != ipr.FailAlreadyConnected {
		t.Fatalf("second nonce on one tag: %+v", fail)
	}

	// The same client under a new sender tag, with its nonce, keeps its
	// addresses, its downstream queue and its sequence numbers.
	a.data(a.v4(t, "192.0.2.1", 53, "zero"))
	e.r.FromTUN([][]byte{testpkt.UDP4(t, "192.0.2.1", first.V4.String(), 1, "queued")})
	e.clock.advance(30 * time.Second)
	moved := *a
	moved.key[15] = 0x99
	moved.mustConnect()
	if moved.addrs != first {
		t.Fatalf("moved session got %v, want %v", moved.addrs, first)
	}
	if _, ok := e.r.SessionAddrs(a.key); ok {
		t.Fatal("old sender tag still holds the session")
	}
	if old := e.stream(a.key); !old.closed {
		t.Fatal("the old sender tag's stream is still open")
	}
	if _, ok := a.pullOne(); ok {
		t.Fatal("the old sender tag's stream still pulls")
	}
	if got := moved.pull(); len(got) != 1 || got[0].Seq != 0 {
		t.Fatalf("queue did not follow the session: %+v", got)
	}
	moved.data(moved.v4(t, "192.0.2.1", 53, "one"))
	if got := e.tun.take(); len(got) != 2 {
		t.Fatalf("%d packets on the TUN, want 2 (seq 1 followed seq 0)", len(got))
	}
	// The move refreshed the idle timer.
	e.r.Tick(e.clock.advance(45 * time.Second))
	if e.r.Stats().Sessions != 1 || e.r.Stats().SessionsMoved != 1 {
		t.Fatalf("stats %+v", e.r.Stats())
	}

	// A zero nonce is refused: anyone could claim it.
	z := e.client(9)
	z.nonce = [ipr.NonceSize]byte{}
	if fail, ok := z.connect().(*ipr.ConnectFail); !ok || fail.Reason != ipr.FailOther {
		t.Fatalf("zero nonce: %+v", fail)
	}

	// Disconnect ends the session and quarantines its addresses.
	moved.send(&ipr.Disconnect{})
	if all, _ := e.r.cfg.Pool.Quarantined(moved.key, e.clock.Now()); e.r.Stats().Sessions != 0 || e.r.cfg.Pool.InUse() != 0 || all != 1 {
		t.Fatalf("after disconnect: %+v, pool %d in use, %d quarantined", e.r.Stats(), e.r.cfg.Pool.InUse(), all)
	}
	// Issue 10: nobody else may have them by asking (this Want was
	// granted before): the other client gets other addresses.
	w := e.client(3)
	w.send(&ipr.Connect{RequestID: 1, Nonce: w.nonce, Want: ipr.AddrPair{V4: first.V4}})
	if ok, isOK := e.lastResponse(w.key).(*ipr.ConnectOK); !isOK || ok.Addrs == first {
		t.Fatalf("another session wanted %v and got %+v", first, ok)
	}
	if e.r.Stats().WantRefused != 1 {
		t.Fatalf("WantRefused = %d, want 1", e.r.Stats().WantRefused)
	}
	// The session itself, reconnecting under yet another tag with its
	// nonce, gets them back.
	back := *a
	back.key[15] = 0x77
	back.send(&ipr.Connect{RequestID: 2, Nonce: back.nonce, Want: first})
	if ok, isOK := e.lastResponse(back.key).(*ipr.ConnectOK); !isOK || ok.Addrs != first {
		t.Fatalf("reconnecting session wanted its %v, got %+v", first, ok)
	}
}

// Issue 10: one sender took every address by connecting and disconnecting
// with fresh nonces. Its ended sessions' addresses stay in quarantine and
// count against it: past MaxAddrsPerSender its Connects are refused, while
// others still connect. Before the cap (and the quarantine) the loop below
// cycled through the whole pool.
func TestRouterCapsAddressesPerSender(t *testing.T) {
	e := newTestExit(t, func(c *Config) { c.MaxAddrsPerSender = 3 })
	m := e.client(0xd)
	refused := 0
	for i := range 50 {
		m.nonce[2] = byte(i)
		switch resp := m.connect().(type) {
		case *ipr.ConnectOK:
			m.send(&ipr.Disconnect{})
		case *ipr.ConnectFail:
			if resp.Reason != ipr.FailNoFreeAddress {
				t.Fatalf("connect %d: %+v", i, resp)
			}
			refused++
		}
	}
	all, mine := e.r.cfg.Pool.Quarantined(m.key, e.clock.Now())
	if mine != 3 || all != 3 || refused != 47 || e.r.Stats().ConnectsOverCap != 47 {
		t.Fatalf("sender holds %d (of %d) quarantined, %d connects refused (%d counted); want 3, 3, 47, 47",
			mine, all, refused, e.r.Stats().ConnectsOverCap)
	}
	e.client(1).mustConnect()
	// When the quarantine ends the sender may connect again.
	e.clock.advance(DefaultAddrQuarantine)
	m.nonce[2] = 0xff
	if _, ok := m.connect().(*ipr.ConnectOK); !ok {
		t.Fatal("sender still refused after its quarantine ended")
	}
}

func TestRouterGivesUpUpstreamGapOnTick(t *testing.T) {
	e := newTestExit(t, func(c *Config) { c.Reorder.Timeout = 100 * time.Millisecond })
	c := e.client(1)
	c.mustConnect()
	p1 := c.v4(t, "192.0.2.1", 53, "one")
	c.dataAt(1, p1) // 0 is lost
	e.r.Tick(e.clock.advance(99 * time.Millisecond))
	if len(e.tun.take()) != 0 {
		t.Fatal("released before the timeout")
	}
	e.r.Tick(e.clock.advance(time.Millisecond))
	samePackets(t, e.tun.take(), [][]byte{p1})
	if s := e.r.Stats().Reorder; s.GapsSkipped != 1 || s.SeqsSkipped != 1 {
		t.Fatalf("reorder stats %+v", s)
	}
	// Resequencing can be turned off.
	e2 := newTestExit(t, func(c *Config) { c.Reorder.Timeout = -1 })
	c2 := e2.client(1)
	c2.mustConnect()
	c2.dataAt(5, c2.v4(t, "192.0.2.1", 53, "now"))
	if len(e2.tun.take()) != 1 {
		t.Fatal("resequencing off, yet the packet waited")
	}
}

func TestRouterQueueDropsBySojourn(t *testing.T) {
	e := newTestExit(t, nil)
	c := e.client(1)
	c.mustConnect()
	// The internet sends 100 packets/s of 1000 bytes; the transport pulls
	// one bundle (one packet) every 20 ms: a standing queue.
	for range 300 {
		e.r.FromTUN([][]byte{testpkt.IPv4(t, netip.MustParseAddr("192.0.2.1"), c.addrs.V4, ippkt.ProtoUDP, 1, make([]byte, 972))})
		e.clock.advance(10 * time.Millisecond)
		if e.clock.Now().Sub(t0)%(20*time.Millisecond) == 0 {
			if _, ok := c.pullOne(); !ok {
				t.Fatal("nothing to pull from a growing queue")
			}
		}
	}
	s := e.r.Stats()
	if s.Drops[DropSojourn] == 0 || s.Drops[DropQueueFull] != 0 {
		t.Fatalf("drops %v: want sojourn drops, no hard-limit drops", s.Drops)
	}
}

func TestRouterVersionMismatchAndJunk(t *testing.T) {
	e := newTestExit(t, nil)
	key := SessionKey{5}
	e.r.HandleRequest(key, []byte{ipr.ProtocolVersion + 1, 0x03, 0, 0, 0, 0, 0, 0, 0, 1})
	if info, ok := e.lastResponse(key).(*ipr.Info); !ok || info.Code != ipr.InfoVersionMismatch {
		t.Fatalf("%+v", info)
	}
	e.r.HandleRequest(key, []byte{ipr.ProtocolVersion, 0x42})
	e.r.HandleRequest(key, nil)
	if rs := e.responses(key); len(rs) != 0 || e.r.Stats().BadRequests != 3 {
		t.Fatalf("junk answered %+v, stats %+v", rs, e.r.Stats())
	}
	// A bundle with junk in it: the good packets still pass.
	c := e.client(1)
	c.mustConnect()
	good := c.v4(t, "192.0.2.1", 53, "ok")
	bundle := append(append([]byte{0, 3, 1, 2, 3}, 0, byte(len(good))), good...)
	c.send(&ipr.DataUp{Seq: 0, Bundle: bundle})
	samePackets(t, e.tun.take(), [][]byte{good})
	if e.r.Stats().Drops[DropMalformed] != 1 {
		t.Fatalf("drops %v", e.r.Stats().Drops)
	}
}

func TestRouterCountsFailures(t *testing.T) {
	e := newTestExit(t, nil)
	c := e.client(1)
	c.mustConnect()
	e.tun.fail = errors.New("tun gone")
	c.data(c.v4(t, "192.0.2.1", 53, "x"))
	e.mu.Lock()
	e.refuse[c.key] = true
	e.mu.Unlock()
	c.send(&ipr.Ping{ID: 1})
	tooBig := testpkt.IPv4(t, netip.MustParseAddr("192.0.2.1"), c.addrs.V4, ippkt.ProtoUDP, 1, make([]byte, ipr.MaxIPPacket(testCapacity)))
	e.r.FromTUN([][]byte{tooBig})
	s := e.r.Stats()
	if s.Drops[DropTUNWrite] != 1 || s.RepliesFailed != 1 || s.Drops[DropTooBig] != 1 {
		t.Fatalf("stats %+v", s)
	}
	e.r.Close()
	if s := e.r.Stats(); s.Sessions != 0 || s.SessionsClosed != 1 {
		t.Fatalf("after Close %+v", s)
	}
}

func TestNewValidatesConfig(t *testing.T) {
	reply := func(SessionKey, []byte) error { return nil }
	for _, cfg := range []Config{
		{PayloadCapacity: testCapacity, Reply: reply},
		{PayloadCapacity: testCapacity, TUN: &memTUN{}},
		{PayloadCapacity: 60, TUN: &memTUN{}, Reply: reply},
		// CoDel's target must be below its interval.
		{PayloadCapacity: testCapacity, TUN: &memTUN{}, Reply: reply, QueueTarget: time.Second, QueueInterval: time.Second},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
}

// Many clients at once, from many goroutines, as the gateway's workers and
// the TUN reader would call: run with -race.
func TestRouterConcurrent(t *testing.T) {
	e := newTestExit(t, nil)
	const clients, rounds = 8, 50
	cs := make([]*testClient, clients)
	for i := range cs {
		cs[i] = e.client(byte(i + 1))
		cs[i].mustConnect()
	}
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Go(func() {
			for i := range rounds {
				b, _ := ipr.MarshalRequest(&ipr.DataUp{Seq: uint64(i), Bundle: bundleOf(t, c.v4(t, "192.0.2.1", 53, fmt.Sprint(i)))})
				e.r.HandleRequest(c.key, b)
			}
		})
		wg.Go(func() {
			for i := range rounds {
				e.r.FromTUN([][]byte{testpkt.IPv6(t, netip.MustParseAddr("2001:db8::1"), c.addrs.V6, ippkt.ProtoUDP, 1, []byte{byte(i)})})
			}
		})
		wg.Go(func() {
			d := e.stream(c.key).d
			for range rounds {
				d.Pull(make([]byte, 0, testCapacity))
			}
		})
	}
	wg.Go(func() {
		for range rounds {
			e.r.Tick(e.clock.advance(time.Millisecond))
		}
	})
	wg.Wait()
	for _, c := range cs {
		c.pull()
	}
	s := e.r.Stats()
	if s.PacketsUp != clients*rounds || s.PacketsDown != clients*rounds {
		t.Fatalf("up %d down %d, want %d each", s.PacketsUp, s.PacketsDown, clients*rounds)
	}
}

func TestRouterRunStopsWithContext(t *testing.T) {
	e := newTestExit(t, func(c *Config) { c.Now = nil; c.TickInterval = time.Millisecond })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.r.Run(ctx) }()
	time.Sleep(5 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Run returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop")
	}
}

func bundleOf(t testing.TB, pkts ...[]byte) []byte {
	enc := ipr.NewBundleEncoder(1 << 16)
	for _, p := range pkts {
		if err := enc.Add(p); err != nil {
			t.Fatal(err)
		}
	}
	return enc.Bytes()
}
