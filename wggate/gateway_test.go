package wggate

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/nym-go/nym/internal/poll"
	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/link"
	"github.com/nym-go/nym/wgreg"
)

func wgKey(t testing.TB) [32]byte {
	var k [32]byte
	rand.Read(k[:])
	return k
}

func TestEntryRegistersClients(t *testing.T) {
	g, node, _ := startEntry(t, nil)
	ctx := context.Background()
	reg, s, err := wgreg.RegisterEntry(ctx, node, wgKey(t), wgreg.Options{Rotation: testRotation})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if reg.GatewayKey != g.PublicKey() || reg.AddrV4 != netip.MustParsePrefix("10.2.0.2/32") ||
		reg.AddrV6 != netip.MustParsePrefix("fc00::2:2/128") || reg.PSK == [32]byte{} || reg.PeerTimeout != DefaultPeerTimeout {
		t.Fatalf("registration %+v", reg)
	}
	reg2, s2, err := wgreg.RegisterEntry(ctx, node, wgKey(t), wgreg.Options{Rotation: testRotation})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if reg2.AddrV4 != netip.MustParsePrefix("10.2.0.3/32") || reg2.PSK == reg.PSK {
		t.Fatalf("second registration %+v", reg2)
	}
	if g.Peers() != 2 {
		t.Fatalf("%d peers, want 2", g.Peers())
	}
	// The device holds the peer with the PSK the client derived.
	dump, _ := g.dev.IpcGet()
	if !strings.Contains(dump, "preshared_key="+hex.EncodeToString(reg.PSK[:])) {
		t.Fatal("the device does not hold the client's PSK")
	}
}

// rawLink is a registration link driven by hand, for messages a well-behaved
// client never sends.
type rawLink struct {
	conn *link.Conn
	in   chan any
}

func dialRaw(t *testing.T, node directory.Node) *rawLink {
	t.Helper()
	return dialRawWith(t, node, nil)
}

func dialRawWith(t *testing.T, node directory.Node, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *rawLink {
	t.Helper()
	static, _ := link.GenerateKeyPair(nil)
	kem, _ := link.ParseKEMPublicKey(node.KEMKeys[0].Key)
	r := &rawLink{in: make(chan any, 16)}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c, err := link.Dial(ctx, node.WGAddr, node.NoiseKey, link.Config{
		Static:      static,
		DialContext: dial,
		PeerKEM:     func([32]byte) *link.KEMPublicKey { return kem },
		Handler: func(_ *link.Conn, f link.Frame) error {
			m, err := wgreg.Parse(f.Payload)
			if err != nil {
				return err
			}
			r.in <- m
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	r.conn = c
	return r
}

func (r *rawLink) send(t *testing.T, payload []byte) any {
	t.Helper()
	if !r.conn.Send(link.Frame{Kind: link.KindClient, Payload: payload}) {
		t.Fatal("send failed")
	}
	select {
	case m := <-r.in:
		return m
	case <-r.conn.Done():
		t.Fatalf("link closed: %v", r.conn.Err())
	case <-time.After(20 * time.Second):
		t.Fatal("no answer")
	}
	return nil
}

func registerMsg(t *testing.T, node directory.Node, role wgreg.Role, req *wgreg.Request) ([]byte, *wgreg.Pending) {
	t.Helper()
	sealed, p, err := wgreg.SealRequest(&node, testRotation, role, req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := (&wgreg.Register{ID: 1, Sealed: sealed}).AppendBinary(nil)
	return b, p
}

func answerOf(t *testing.T, m any, p *wgreg.Pending) *wgreg.Answer {
	t.Helper()
	r, ok := m.(*wgreg.Reply)
	if !ok {
		t.Fatalf("got %#v, want a Reply", m)
	}
	a, err := p.OpenAnswer(r.Sealed)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestReplayedRegistrationRefused(t *testing.T) {
	g, node, _ := startEntry(t, nil)
	r := dialRaw(t, node)
	req := &wgreg.Request{WGKey: wgKey(t), Time: time.Now()}
	rand.Read(req.Nonce[:])
	msg, p := registerMsg(t, node, wgreg.RoleEntry, req)
	if a := answerOf(t, r.send(t, msg), p); a.Status != wgreg.AnswerOK {
		t.Fatalf("first registration: %+v", a)
	}
	// The same bytes again, on another link as an eavesdropper would.
	a := answerOf(t, dialRaw(t, node).send(t, msg), p)
	if a.Status != wgreg.AnswerRefused || !strings.Contains(a.Text, "replayed") {
		t.Fatalf("replay answered %+v", a)
	}
	// A request dated outside the clock skew.
	old := &wgreg.Request{WGKey: wgKey(t), Time: time.Now().Add(-time.Hour)}
	rand.Read(old.Nonce[:])
	msg, p = registerMsg(t, node, wgreg.RoleEntry, old)
	if a := answerOf(t, r.send(t, msg), p); a.Status != wgreg.AnswerRefused {
		t.Fatalf("stale request answered %+v", a)
	}
	if g.Peers() != 1 {
		t.Fatalf("%d peers, want 1", g.Peers())
	}
	if n := counterValue(g.m.registrations.WithLabelValues(regReplay)); n != 1 {
		t.Fatalf("replays counted %v, want 1", n)
	}
}

func TestRegistrationTickets(t *testing.T) {
	v := &spendChecker{good: "good spend"}
	_, node, _ := startEntry(t, func(c *Config) { c.RequireTickets, c.Tickets = true, v })
	for _, c := range []struct {
		spend string
		want  uint8
	}{{"", wgreg.AnswerTicket}, {"bad spend", wgreg.AnswerTicket}, {"good spend", wgreg.AnswerOK}} {
		_, s, err := wgreg.RegisterEntry(context.Background(), node, wgKey(t), wgreg.Options{Rotation: testRotation, EntrySpend: []byte(c.spend)})
		if s != nil {
			s.Close()
		}
		if (err == nil) != (c.want == wgreg.AnswerOK) || (err != nil && !errors.Is(err, wgreg.ErrGateway)) {
			t.Fatalf("spend %q: %v", c.spend, err)
		}
	}
}

type spendChecker struct{ good string }

func (s *spendChecker) VerifySpend(_ context.Context, role wgreg.Role, spend []byte) error {
	if role != wgreg.RoleEntry || string(spend) != s.good {
		return errors.New("bad spend")
	}
	return nil
}

func TestGarbageRefusedGatewayKeepsServing(t *testing.T) {
	g, node, _ := startEntry(t, nil)
	ep, _ := node.WGAddrPort()

	// Raw bytes on the registration port: the handshake fails, the
	// connection is closed.
	c, err := net.Dial("tcp", ep.String())
	if err != nil {
		t.Fatal(err)
	}
	junk := make([]byte, 4096)
	rand.Read(junk)
	c.Write(junk)
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("the registration port answered garbage")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the registration port kept a garbage connection open")
	}
	c.Close()

	// Garbage datagrams on the WireGuard port, one shaped like a
	// handshake initiation.
	u, err := net.Dial("udp", ep.String())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{1, 148, 92, 1400} {
		b := make([]byte, n)
		rand.Read(b)
		if n == 148 {
			b[0], b[1], b[2], b[3] = 1, 0, 0, 0
		}
		u.Write(b)
	}
	u.Close()

	// Garbage inside a good link: answered with an Error, link kept.
	r := dialRaw(t, node)
	if m, ok := r.send(t, []byte{9, 0, 0, 0, 1, 2, 3}).(*wgreg.Error); !ok || m.Code != wgreg.ErrCodeMalformed {
		t.Fatalf("garbage message answered %#v", m)
	}
	bogus := make([]byte, 2000)
	rand.Read(bogus)
	copy(bogus, []byte{0, 0, 0, 0, 0, 0, 0, testRotation}) // a rotation it holds
	b, _ := (&wgreg.Register{ID: 3, Sealed: bogus}).AppendBinary(nil)
	if m, ok := r.send(t, b).(*wgreg.Error); !ok || m.Code != wgreg.ErrCodeMalformed {
		t.Fatalf("unopenable request answered %#v", m)
	}
	// A Forward at an entry, and a request sealed for the exit role.
	fwd, _ := (&wgreg.Forward{ID: 4, Sealed: bogus}).AppendBinary(nil)
	if m, ok := r.send(t, fwd).(*wgreg.Error); !ok || m.Code != wgreg.ErrCodeRefused {
		t.Fatalf("forward at an entry answered %#v", m)
	}
	req := &wgreg.Request{WGKey: wgKey(t), Time: time.Now()}
	msg, _ := registerMsg(t, node, wgreg.RoleExit, req)
	if m, ok := r.send(t, msg).(*wgreg.Error); !ok || m.Code != wgreg.ErrCodeMalformed {
		t.Fatalf("exit-role request at the entry answered %#v", m)
	}

	// The gateway still serves.
	_, s, err := wgreg.RegisterEntry(context.Background(), node, wgKey(t), wgreg.Options{Rotation: testRotation})
	if err != nil {
		t.Fatalf("registration after garbage: %v", err)
	}
	s.Close()
	if g.Peers() != 1 {
		t.Fatalf("%d peers, want 1", g.Peers())
	}
}

func TestIdlePeerExpiresAndAddressIsReused(t *testing.T) {
	g, node, _ := startEntry(t, func(c *Config) { c.PeerTimeout = 300 * time.Millisecond })
	first := wgKey(t)
	reg, s, err := wgreg.RegisterEntry(context.Background(), node, first, wgreg.Options{Rotation: testRotation})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	// The counter moves once the expiry is complete, addresses released.
	poll.Until(t, 20*time.Second, "the idle peer to expire", func() bool { return counterValue(g.m.expired) == 1 })
	dump, _ := g.dev.IpcGet()
	if strings.Contains(dump, hex.EncodeToString(first[:])) {
		t.Fatal("the expired peer is still on the device")
	}
	if g.Peers() != 0 {
		t.Fatalf("%d peers after expiry", g.Peers())
	}
	reg2, s2, err := wgreg.RegisterEntry(context.Background(), node, wgKey(t), wgreg.Options{Rotation: testRotation})
	if err != nil {
		t.Fatal(err)
	}
	s2.Close()
	if reg2.AddrV4 != reg.AddrV4 || reg2.AddrV6 != reg.AddrV6 {
		t.Fatalf("new peer got %v %v, want the expired one's %v %v", reg2.AddrV4, reg2.AddrV6, reg.AddrV4, reg.AddrV6)
	}
}

func TestConfigDefaults(t *testing.T) {
	k := newTestKeys(t)
	c, err := k.config(wgreg.RoleExit, netip.MustParseAddrPort("127.0.0.1:0")).withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.PeerTimeout != DefaultPeerTimeout || c.MTU != DefaultExitMTU || c.RangeV4 != DefaultExitRangeV4 || c.TUN != DefaultExitTUN {
		t.Fatalf("defaults %+v", c)
	}
	bad := k.config(wgreg.RoleEntry, netip.MustParseAddrPort("127.0.0.1:0"))
	bad.RequireTickets = true
	if _, err := bad.withDefaults(); err == nil {
		t.Fatal("tickets required without a verifier accepted")
	}
	bad = k.config(wgreg.RoleEntry, netip.MustParseAddrPort("127.0.0.1:0"))
	bad.RangeV4 = netip.MustParsePrefix("10.0.0.0/31")
	if _, err := New(bad); err == nil {
		t.Fatal("a /31 client range accepted")
	}
}

// counterValue reads a counter or gauge.
func counterValue(c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

func TestPeersPerAddressBounded(t *testing.T) {
	g, node, _ := startEntry(t, func(c *Config) { c.MaxPeersPerIP = 2 })
	var keys [][32]byte
	for i := range 3 {
		k := wgKey(t)
		keys = append(keys, k)
		_, s, err := wgreg.RegisterEntry(context.Background(), node, k, wgreg.Options{Rotation: testRotation})
		if s != nil {
			s.Close()
		}
		if (i < 2) != (err == nil) {
			t.Fatalf("registration %d from one address: %v", i, err)
		}
	}
	// Renewing a key it holds is not one more.
	_, s, err := wgreg.RegisterEntry(context.Background(), node, keys[0], wgreg.Options{Rotation: testRotation})
	if err != nil {
		t.Fatalf("renewal: %v", err)
	}
	s.Close()
	if g.Peers() != 2 {
		t.Fatalf("%d peers, want 2", g.Peers())
	}
}

// TestEntryKeepsLastEpochsExits: at an epoch boundary the entry still
// relays to the previous epoch's exits, and forgets them one epoch later.
func TestEntryKeepsLastEpochsExits(t *testing.T) {
	g, _, _ := startEntry(t, nil)
	node := func(ep string) directory.Node { return directory.Node{WGAddr: ep} }
	allowed := func(ep string) bool { return (*g.relay.exits.Load())[netip.MustParseAddrPort(ep)] }
	g.Update(&directory.Topology{Epoch: 1, Exit: []directory.Node{node("192.0.2.1:51820")}})
	g.Update(&directory.Topology{Epoch: 2, Exit: []directory.Node{node("192.0.2.2:51820")}})
	if !allowed("192.0.2.1:51820") || !allowed("192.0.2.2:51820") {
		t.Fatal("the previous epoch's exit is cut off at the boundary")
	}
	g.Update(&directory.Topology{Epoch: 3, Exit: []directory.Node{node("192.0.2.3:51820")}})
	if allowed("192.0.2.1:51820") || !allowed("192.0.2.2:51820") || !allowed("192.0.2.3:51820") {
		t.Fatal("exits of two epochs ago still allowed, or the last ones not")
	}
}
