package vpn

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nym-go/nym/internal/leakcheck"
	"github.com/nym-go/nym/internal/poll"
	"github.com/nym-go/nym/ipr"
	"github.com/nym-go/nym/mixnet/client"
	"github.com/nym-go/nym/tun"
	"github.com/nym-go/nym/tun/ippkt"
)

// Capacities of the tests' packets: a tagged packet without SURBs, and
// what each SURB takes of it.
const (
	testCapNone  = 1600
	testSURBSize = 400
)

// testPayload is the mixnet client's side of a Pull, as the contract has it:
// SetSURBs sizes the buffer, SetData takes what was written in place.
type testPayload struct {
	n    int
	buf  []byte
	data []byte
	set  bool
}

func (p *testPayload) SetSURBs(n int) (int, error) {
	room := testCapNone - n*testSURBSize
	if n < 0 || room < 0 {
		return 0, fmt.Errorf("%d SURBs do not fit", n)
	}
	p.n, p.buf = n, make([]byte, 0, room)
	return room, nil
}

func (p *testPayload) Buf() []byte { return p.buf }

func (p *testPayload) SetData(b []byte) error {
	if cap(b) != cap(p.buf) || (cap(b) > 0 && &b[:cap(b)][cap(b)-1] != &p.buf[:cap(p.buf)][cap(p.buf)-1]) {
		return errors.New("data not written in place")
	}
	p.data, p.set = b, true
	return nil
}

// pull asks u for one DataUp, as the client does when it has a slot.
func pull(t *testing.T, u *upstream) (up *ipr.DataUp, nSURBs int, ok bool) {
	t.Helper()
	var p testPayload
	if !u.fill(&p) {
		return nil, 0, false
	}
	if !p.set {
		t.Fatal("Pull reported a packet but set no data")
	}
	req, err := ipr.ParseRequest(p.data)
	if err != nil {
		t.Fatalf("Pull wrote no request: %v", err)
	}
	up, isData := req.(*ipr.DataUp)
	if !isData {
		t.Fatalf("Pull wrote a %T", req)
	}
	return up, p.n, true
}

// virtualClock is the upstream's clock in tests that count sojourn times.
type virtualClock struct{ ns atomic.Int64 }

func (c *virtualClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *virtualClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// testUpstream is a tunnel's upstream at Nym's default CoDel parameters,
// with a SURB budget of minSURBs and the given clock, that wakes ready.
func testUpstream(t testing.TB, mtu, minSURBs int, clock *virtualClock) (*Tunnel, chanWaker) {
	t.Helper()
	target, interval := upstreamCoDel(DefaultProfile())
	tn := &Tunnel{
		log:    quietLogger(),
		mtu:    mtu,
		cfg:    Config{QueueTarget: target, QueueInterval: interval, MaxQueuePackets: 1024, MaxQueueBytes: 4 << 20},
		budget: newSURBBudget(minSURBs, max(minSURBs, 400), time.Hour, clock.now()),
	}
	var err error
	if tn.up, err = newUpstream(tn); err != nil {
		t.Fatal(err)
	}
	tn.up.now = clock.now
	tn.up.capNone, tn.up.surbSize = testCapNone, testSURBSize
	ready := make(chanWaker, 1)
	tn.up.setStream(ready)
	return tn, ready
}

// userStack runs readTUN over a userspace stack whose UDP datagrams to
// port 9 of internetAddr are what the tests count.
func userStack(t *testing.T, tn *Tunnel) *tun.UDPConn {
	t.Helper()
	dev, stack, err := tun.CreateNetstack([]netip.Addr{netip.MustParseAddr("10.0.3.4")}, nil, tn.mtu)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { tn.readTUN(dev) })
	t.Cleanup(func() { dev.Close(); wg.Wait() })
	c, err := stack.DialUDPAddrPort(netip.AddrPort{}, netip.AddrPortFrom(internetAddr, 9))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// datagrams returns the sequence numbers of the test's datagrams in a
// DataUp's bundle.
func datagrams(t *testing.T, up *ipr.DataUp) []uint32 {
	t.Helper()
	pkts, bad := ipr.SplitBundle(up.Bundle, nil)
	if bad != 0 {
		t.Fatalf("%d malformed packets in a bundle", bad)
	}
	var seqs []uint32
	for _, b := range pkts {
		p, err := ippkt.Parse(b)
		if err != nil || p.Protocol != ippkt.ProtoUDP || p.DstPort != 9 || len(b) < p.HeaderLen+8+4 {
			continue // the stack's own chatter
		}
		seqs = append(seqs, binary.BigEndian.Uint32(b[p.HeaderLen+8:]))
	}
	return seqs
}

func queued(u *upstream) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.q.Len()
}

// allQueued reports whether the queue holds n of the tests' datagrams'
// bytes (1000 bytes of data in UDP over IPv4).
func allQueued(u *upstream, n int) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.q.Bytes() >= n*1028
}

// Packets read from the TUN wait in the upstream queue until the mixnet
// client pulls: readTUN only queues them and wakes the stream; each Pull
// (a slot) takes one DataUp's worth, in order.
func TestUpstreamPulledOnlyOnSlot(t *testing.T) {
	leakcheck.Check(t)
	var clock virtualClock
	tn, ready := testUpstream(t, 1300, 0, &clock)
	c := userStack(t, tn)
	const n = 5
	for i := range n {
		msg := make([]byte, 1000) // two do not fit one bundle
		binary.BigEndian.PutUint32(msg, uint32(i))
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
	}
	poll.Until(t, 20*time.Second, "the datagrams queued", func() bool { return allQueued(tn.up, n) })
	// readTUN wakes the stream after it let go of the queue: wait for it.
	woken := time.NewTimer(20 * time.Second)
	defer woken.Stop()
	select {
	case <-ready:
	case <-woken.C:
		t.Fatal("readTUN queued packets without waking the stream")
	}
	if b, p := tn.bundlesUp.Load(), tn.packetsUp.Load(); b != 0 || p != 0 {
		t.Fatalf("%d DataUps with %d packets before any slot", b, p)
	}
	var got []uint32
	for slot := 0; ; slot++ {
		up, nSURBs, ok := pull(t, tn.up)
		if !ok {
			break
		}
		if up.Seq != uint64(slot) || nSURBs != 0 {
			t.Fatalf("slot %d: DataUp seq %d with %d SURBs (none needed)", slot, up.Seq, nSURBs)
		}
		seqs := datagrams(t, up)
		if len(seqs) > 1 {
			t.Fatalf("slot %d: %d datagrams of 1028 bytes in one bundle", slot, len(seqs))
		}
		got = append(got, seqs...)
		if b := tn.bundlesUp.Load(); b != uint64(slot+1) {
			t.Fatalf("%d DataUps after %d slots", b, slot+1)
		}
	}
	if len(got) != n {
		t.Fatalf("pulled datagrams %v, want %d", got, n)
	}
	for i, s := range got {
		if s != uint32(i) {
			t.Fatalf("pulled datagrams %v out of order", got)
		}
	}
	if queued(tn.up) != 0 || len(tn.up.free) == 0 {
		t.Fatalf("after the pulls: %d queued, %d read buffers back", queued(tn.up), len(tn.up.free))
	}
}

// A standing queue at the upstream: packets arrive faster than the slots
// take them, and CoDel drops at the head once the sojourn stayed above
// target for an interval, at a rising rate. The clock is virtual: each slot
// comes a mean Poisson interval (20 ms) after the last.
func TestUpstreamCoDelDropsStandingQueue(t *testing.T) {
	leakcheck.Check(t)
	var clock virtualClock
	clock.advance(time.Hour)
	tn, _ := testUpstream(t, 1300, 0, &clock)
	c := userStack(t, tn)
	const n = 120
	for i := range n {
		msg := make([]byte, 1000)
		binary.BigEndian.PutUint32(msg, uint32(i))
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
	}
	poll.Until(t, 20*time.Second, "the datagrams queued", func() bool { return allQueued(tn.up, n) })

	target, interval := tn.cfg.QueueTarget, tn.cfg.QueueInterval
	start := clock.now()
	var got []uint32
	var firstDrop time.Duration = -1
	for {
		clock.advance(20 * time.Millisecond)
		up, _, ok := pull(t, tn.up)
		if !ok {
			break
		}
		got = append(got, datagrams(t, up)...)
		if firstDrop < 0 && tn.Stats().QueueDropsSojourn > 0 {
			firstDrop = clock.now().Sub(start)
		}
	}
	drops := tn.Stats().QueueDropsSojourn
	if drops == 0 {
		t.Fatal("no CoDel drop from a standing queue")
	}
	// Every packet waited at least 20 ms, so the sojourn was above
	// target from the slot at target; CoDel waits an interval more.
	if firstDrop < target+interval {
		t.Fatalf("first drop %v after the queue formed, before target+interval %v", firstDrop, target+interval)
	}
	if uint64(len(got))+drops < n || len(got) == n {
		t.Fatalf("%d datagrams pulled and %d dropped of %d", len(got), drops, n)
	}
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] {
			t.Fatalf("pulled out of order: %v", got)
		}
	}
	t.Logf("%d of %d dropped, the first %v after the queue formed", drops, n, firstDrop)
}

// The SURB policy of the pulls: SURBs alone when nothing is queued and the
// exit runs short; beside data, room for at least one; a head packet too big
// for that gets the next slot to itself, after a SURB-only DataUp.
func TestUpstreamSURBPolicy(t *testing.T) {
	var clock virtualClock
	tn, _ := testUpstream(t, 1500, 20, &clock)
	u := tn.up
	push := func(size int) {
		buf := make([]byte, tun.MaxPacketSize)
		u.push([][]byte{buf}, []int{size}, clock.now())
	}
	check := func(what string, wantSURBs, wantPackets int, wantOK bool) {
		t.Helper()
		before := tn.packetsUp.Load()
		up, n, ok := pull(t, u)
		if ok != wantOK {
			t.Fatalf("%s: pulled %v, want %v", what, ok, wantOK)
		}
		if !ok {
			return
		}
		if got := int(tn.packetsUp.Load() - before); n != wantSURBs || got != wantPackets {
			t.Fatalf("%s: %d SURBs and %d packets (%d bytes), want %d and %d", what, n, got, len(up.Bundle), wantSURBs, wantPackets)
		}
	}
	push(0) // an empty read: skipped, not queued to wedge the head
	if queued(u) != 0 {
		t.Fatal("an empty packet was queued")
	}
	// (1600−10)/400: three SURBs fit a DataUp without data.
	check("SURBs alone", 3, 0, true)
	push(100)
	check("a small packet", 3, 1, true)
	push(1000)
	check("a packet leaving room for one SURB", 1, 1, true)
	push(1400)
	push(300)
	check("a big head: SURBs first", 3, 0, true)
	check("then the big head alone", 0, 1, true)
	check("then the small one with SURBs", 3, 1, true)

	// The exit holds enough: data without SURBs, and nothing to pull
	// when nothing is queued.
	tn.budget.gave(100)
	push(100)
	check("enough SURBs", 0, 1, true)
	check("nothing to send", 0, 0, false)
}

// An upload of full-size packets keeps its slots while the exit lacks only
// a SURB or two (its ACKs spend one now and then): no SURB-only DataUp
// until it would be full, even below the floor. Before, every big head went
// after a SURB-only DataUp of one SURB, and the upload had every other slot.
func TestUploadNotHalvedBySURBs(t *testing.T) {
	var clock virtualClock
	tn, _ := testUpstream(t, 1500, 4, &clock) // a stock of 4, a floor of 2
	u := tn.up
	tn.budget.gave(4)
	for range 6 {
		u.push([][]byte{make([]byte, tun.MaxPacketSize)}, []int{1500}, clock.now())
	}
	alone := func(what string) {
		t.Helper()
		if up, n, ok := pull(t, u); !ok || n != 0 || len(up.Bundle) < 1500 {
			t.Fatalf("%s: %d SURBs and a bundle of %d bytes, want the next packet alone", what, n, len(up.Bundle))
		}
	}
	tn.budget.replied(-1, clock.now())
	alone("one lacking")
	tn.budget.replied(-1, clock.now())
	alone("two lacking, at the floor")
	// Three lacking, below the floor: a full SURB-only DataUp goes
	// first, then the upload goes on.
	tn.budget.replied(-1, clock.now())
	if _, n, ok := pull(t, u); !ok || n != 3 {
		t.Fatalf("%d SURBs, want a full SURB-only DataUp of 3", n)
	}
	alone("after the SURBs")
}

// Above the floor (half the exit's stock) the SURBs a busy upload's ACKs
// spend cost it no slot: full-size packets go alone, SURBs ride only in the
// room small packets leave, and alone only in a full DataUp when nothing is
// queued. Below the floor the exit comes first again.
func TestUploadKeepsSlotsAboveFloor(t *testing.T) {
	var clock virtualClock
	tn, _ := testUpstream(t, 1500, 20, &clock)
	u := tn.up
	tn.budget.gave(20)
	push := func(size int) { u.push([][]byte{make([]byte, tun.MaxPacketSize)}, []int{size}, clock.now()) }
	for i := range 10 { // the exit spends ten: at the floor, not below
		tn.budget.replied(0, clock.now())
		push(1500)
		if up, n, ok := pull(t, u); !ok || n != 0 || len(up.Bundle) < 1500 {
			t.Fatalf("reply %d: %d SURBs and a bundle of %d bytes, want the packet alone", i, n, len(up.Bundle))
		}
	}
	// A small packet: SURBs in the room it leaves, three (1600−10−102)/400.
	push(100)
	if _, n, ok := pull(t, u); !ok || n != 3 {
		t.Fatalf("a small packet: %d SURBs, want 3 in its room", n)
	}
	// Seven owed and nothing queued: a full SURB-only DataUp, then
	// another; with one owed, nothing.
	for _, want := range []int{3, 3} {
		if _, n, ok := pull(t, u); !ok || n != want {
			t.Fatalf("nothing queued, %d SURBs, want %d", n, want)
		}
	}
	if _, n, ok := pull(t, u); ok {
		t.Fatalf("one SURB owed above the floor: a DataUp of %d SURBs, want none", n)
	}
	// Below the floor: a full-size head waits behind a SURB-only DataUp.
	for range 11 {
		tn.budget.replied(0, clock.now())
	}
	push(1500)
	if _, n, ok := pull(t, u); !ok || n != 3 {
		t.Fatalf("below the floor: %d SURBs, want a full SURB-only DataUp first", n)
	}
	if up, n, ok := pull(t, u); !ok || n != 0 || len(up.Bundle) < 1500 {
		t.Fatalf("then %d SURBs and a bundle of %d bytes, want the packet alone", n, len(up.Bundle))
	}
}

// chanWaker stands for the mixnet stream where a test plays the client: a
// Wake is a token in the channel.
type chanWaker chan struct{}

func (c chanWaker) Wake() {
	select {
	case c <- struct{}{}:
	default:
	}
}

// The SURB count is computed from two capacities, not probed: it must agree
// with the client's capacity for every message length, the largest count
// whose capacity still holds the message.
func TestSURBsBesideMatchesClient(t *testing.T) {
	c := new(client.Client) // the capacities are the wire format's, not a connection's
	capNone := c.RepliablePacketCapacity(0)
	surbSize := capNone - c.RepliablePacketCapacity(1)
	for msgLen := 0; msgLen <= capNone+1; msgLen++ {
		n := surbsBeside(capNone, surbSize, msgLen)
		if msgLen > capNone {
			if n != 0 {
				t.Fatalf("%d bytes, more than fit: %d SURBs", msgLen, n)
			}
			continue
		}
		if c.RepliablePacketCapacity(n) < msgLen || c.RepliablePacketCapacity(n+1) >= msgLen {
			t.Fatalf("%d bytes: %d SURBs, but capacities %d and %d", msgLen, n, c.RepliablePacketCapacity(n), c.RepliablePacketCapacity(n+1))
		}
	}
}

// BenchmarkUpstreamPushPull is the tunnel's part of the upstream path per
// packet: readTUN's handing over of the read buffer and a Pull packing it
// into the client's buffer (the one copy), without the Sphinx layer. In
// steady state it allocates nothing: read buffers cycle through the free
// list.
func BenchmarkUpstreamPushPull(b *testing.B) {
	var clock virtualClock
	tn, _ := testUpstream(b, 1500, 0, &clock)
	u := tn.up
	bufs, sizes := make([][]byte, 1), []int{1400}
	u.getBufs(bufs)
	p := testPayload{buf: make([]byte, 0, testCapNone)}
	rp := &reusedPayload{&p}
	b.ReportAllocs()
	b.SetBytes(1400)
	for b.Loop() {
		sizes[0] = 1400
		u.push(bufs, sizes, clock.now())
		p.buf, p.set = p.buf[:0], false
		if !u.fill(rp) {
			b.Fatal("nothing pulled")
		}
	}
}

// reusedPayload is a testPayload whose buffer is kept across Pulls, as the
// client's pooled packet buffers are.
type reusedPayload struct{ *testPayload }

func (p *reusedPayload) SetSURBs(n int) (int, error) {
	p.n = n
	return cap(p.buf), nil
}
