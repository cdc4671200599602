package client

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nym-go/nym/mixnet/sphinx"
)

// testSource hands out numbered payloads, as many as add allowed, each
// filling the packet: a 4-byte sequence number, then random bytes.
type testSource struct {
	t     testing.TB
	surbs func(seq int) int // SURBs to ask for; nil: none

	mu    sync.Mutex
	limit int
	calls int      // Pull calls
	sent  [][]byte // payloads handed out, in order
	check func()   // run at every Pull, under mu
}

func (s *testSource) Pull(p *Payload) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.check != nil {
		s.check()
	}
	if len(s.sent) >= s.limit {
		return false
	}
	seq := len(s.sent)
	room := cap(p.Buf())
	if s.surbs != nil {
		var err error
		if room, err = p.SetSURBs(s.surbs(seq)); err != nil {
			s.t.Errorf("SetSURBs: %v", err)
			return false
		}
	}
	b := p.Buf()
	if len(b) != 0 || cap(b) != room {
		s.t.Errorf("Buf: len %d cap %d, want 0 and %d", len(b), cap(b), room)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(seq))
	b = append(b, randomBytes(room-4)...)
	if err := p.SetData(b); err != nil {
		s.t.Errorf("SetData: %v", err)
		return false
	}
	s.sent = append(s.sent, bytes.Clone(b))
	return true
}

func (s *testSource) add(n int) {
	s.mu.Lock()
	s.limit += n
	s.mu.Unlock()
}

func (s *testSource) counts() (calls, sent int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls, len(s.sent)
}

func (s *testSource) payload(i int) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent[i]
}

// A forward stream delivers every payload it pulled, in the order pulled,
// each with our sender tag and the SURBs the source asked for, with the
// Poisson stream off and on.
func TestStreamForwardInOrder(t *testing.T) {
	for _, lp := range []Loopix{{}, {SendInterval: 2 * time.Millisecond}} {
		t.Run(fmt.Sprint("send_interval_", lp.SendInterval), func(t *testing.T) {
			f := newFakeNet(t, 1, 1)
			f.keepOrder()
			a := f.connect(t, func(c *Config) { c.Loopix = &lp })
			b := f.connect(t, nil)
			src := &testSource{t: t, surbs: func(seq int) int {
				if seq%10 == 0 {
					return 2
				}
				return 0
			}}
			st, err := a.OpenStream(b.Address(), src)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			const n = 40
			src.add(n)
			st.Wake()
			var tag AnonymousSenderTag
			for i := range n {
				m := receive(t, b, 20*time.Second)
				if !bytes.Equal(m.Data, src.payload(i)) {
					t.Fatalf("message %d: %d bytes, not payload %d (seq %x)", i, len(m.Data), i, m.Data[:4])
				}
				if m.SenderTag.IsZero() || (i > 0 && m.SenderTag != tag) {
					t.Fatalf("message %d: sender tag %v, first %v", i, m.SenderTag, tag)
				}
				tag = m.SenderTag
			}
			if got := b.ReplySURBs(tag); got != 2*(n/10) {
				t.Fatalf("recipient holds %d SURBs, want %d", got, 2*(n/10))
			}
			if s := a.Stats(); s.AwaitingAck != 0 || s.InFlight != 0 {
				t.Fatalf("stream packets tracked as reliable: %+v", s)
			}
		})
	}
}

// A reply stream pulls only with a SURB in hand; out of SURBs it says so
// once, and resumes when the sender sends more.
func TestReplyStreamStarves(t *testing.T) {
	f := newFakeNet(t, 1, 1)
	f.keepOrder()
	a := f.connect(t, nil)
	// LowWater 1: b never asks for more, so the SURBs it holds are
	// exactly those a sent.
	b := f.connect(t, func(c *Config) { c.SURBs = SURBPolicy{LowWater: 1} })
	var given atomic.Int64
	give := func(n int) {
		given.Add(int64(n))
		if err := a.SendRepliablePacket(context.Background(), b.Address(), []byte("surbs"), n); err != nil {
			t.Fatal(err)
		}
	}
	give(3)
	m := receive(t, b, 10*time.Second)
	tag := m.SenderTag
	go func() { // b drains what a sends it
		for range b.Receive() {
		}
	}()

	src := &testSource{t: t}
	src.check = func() { // under src.mu: sent are the SURBs spent so far
		if int64(len(src.sent)) >= given.Load() {
			t.Errorf("Pull %d with %d SURBs given, %d spent: no SURB in hand", src.calls, given.Load(), len(src.sent))
		}
	}
	starved := make(chan struct{}, 10)
	st, err := b.OpenReplyStream(tag, src, func() { starved <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	src.add(10)
	st.Wake()

	next := 0
	replies := func(n int) {
		t.Helper()
		for range n {
			r := receive(t, a, 10*time.Second)
			if !r.IsReply || !bytes.Equal(r.Data, src.payload(next)) {
				t.Fatalf("reply %d differs (reply=%v)", next, r.IsReply)
			}
			next++
		}
	}
	waitStarved := func() {
		t.Helper()
		select {
		case <-starved:
		case <-time.After(10 * time.Second):
			t.Fatalf("no starvation reported; %d replies", next)
		}
	}
	replies(3)
	waitStarved()
	st.Wake() // woken while starved: no Pull, no second report
	give(3)
	replies(3)
	waitStarved()
	give(3)
	replies(3)
	waitStarved()
	give(2) // one more than the payload left
	replies(1)
	waitFor(t, 10*time.Second, "the empty Pull", func() bool { c, _ := src.counts(); return c == 11 })
	if n := b.ReplySURBs(tag); n != 1 {
		t.Fatalf("%d SURBs left, want the 1 the empty Pull did not spend", n)
	}
	select {
	case <-starved:
		t.Fatal("starvation reported with a SURB held")
	default:
	}
}

// Close drops the packet built ahead: the slot that would have carried it
// carries loop cover. Every slot carries exactly one packet, streams or not,
// and streams take their turns.
func TestStreamSlots(t *testing.T) {
	f := newFakeNet(t, 1, 1)
	rec := &shapeRecorder{sizes: map[int]int{}}
	lp := Loopix{SendInterval: time.Hour}
	a := f.connect(t, func(c *Config) {
		c.Loopix = &lp
		c.hooks = &testHooks{noClock: true, onSend: rec.onSend}
	})
	b := f.connect(t, nil)
	built := func(s *Stream) bool {
		a.sched.mu.Lock()
		defer a.sched.mu.Unlock()
		return len(s.built) == streamAhead
	}
	open := func() (*Stream, *testSource) {
		src := &testSource{t: t, limit: 1 << 20}
		st, err := a.OpenStream(b.Address(), src)
		if err != nil {
			t.Fatal(err)
		}
		st.Wake()
		return st, src
	}
	s1, src1 := open()
	s2, src2 := open()
	for i := range 10 {
		waitFor(t, 10*time.Second, "both streams to build their packets ahead", func() bool { return built(s1) && built(s2) })
		a.realTick(time.Now())
		if real, cover, _ := rec.take(); real != 1 || cover != 0 {
			t.Fatalf("slot %d: %d real, %d cover packets", i, real, cover)
		}
	}
	waitFor(t, 10*time.Second, "both streams to build their packets ahead", func() bool { return built(s1) && built(s2) })
	_, n1 := src1.counts()
	_, n2 := src2.counts()
	if want := 5 + streamAhead; n1 != want || n2 != want { // 5 sent each, the rest built ahead
		t.Fatalf("pulled %d and %d over 10 slots, want %d and %d (round robin)", n1, n2, want, want)
	}
	// The internal queue takes its turn among the streams.
	if err := a.SendRepliablePacket(context.Background(), b.Address(), []byte("control"), 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the control packet built", func() bool { return len(a.ready) == 1 })
	for range 3 {
		a.realTick(time.Now())
	}
	if len(a.ready) != 0 {
		t.Fatal("the internal queue missed its turn in 3 slots")
	}
	rec.take()
	// Both back at their packets ahead, so no Pull is running at Close.
	waitFor(t, 10*time.Second, "both streams to build their packets ahead", func() bool { return built(s1) && built(s2) })

	s1.Close()
	s2.Close()
	a.sched.mu.Lock()
	left := len(s1.built) + len(s2.built)
	a.sched.mu.Unlock()
	if left > 0 {
		t.Fatal("Close left a packet built")
	}
	c1, _ := src1.counts()
	c2, _ := src2.counts()
	a.realTick(time.Now())
	if real, cover, _ := rec.take(); real != 0 || cover != 1 {
		t.Fatalf("slot after Close: %d real, %d cover", real, cover)
	}
	if d1, _ := src1.counts(); d1 != c1 {
		t.Fatal("Pull after Close")
	}
	if d2, _ := src2.counts(); d2 != c2 {
		t.Fatal("Pull after Close")
	}
	s1.Close() // idempotent
}

// A woken stream whose source has nothing costs no packet, and a reply
// stream's empty Pull spends no SURB.
func TestStreamEmptyWake(t *testing.T) {
	f := newFakeNet(t, 1, 1)
	a := f.connect(t, nil)
	b := f.connect(t, nil)
	if err := a.SendRepliablePacket(context.Background(), b.Address(), []byte("surbs"), 3); err != nil {
		t.Fatal(err)
	}
	tag := receive(t, b, 10*time.Second).SenderTag
	fwd := &testSource{t: t}
	sf, err := a.OpenStream(b.Address(), fwd)
	if err != nil {
		t.Fatal(err)
	}
	rep := &testSource{t: t}
	sr, err := b.OpenReplyStream(tag, rep, func() { t.Error("starved with SURBs held") })
	if err != nil {
		t.Fatal(err)
	}
	before := a.Stats().RealPacketsSent
	for i := range 20 {
		sf.Wake()
		sr.Wake()
		waitFor(t, 10*time.Second, "both Pulls", func() bool {
			c1, _ := fwd.counts()
			c2, _ := rep.counts()
			return c1 == i+1 && c2 == i+1
		})
	}
	if n := a.Stats().RealPacketsSent - before; n != 0 {
		t.Fatalf("%d packets for empty Pulls", n)
	}
	if s := b.Stats(); s.RealPacketsSent != 0 || b.ReplySURBs(tag) != 3 {
		t.Fatalf("replier: %d packets sent, %d SURBs held; want 0 and 3", s.RealPacketsSent, b.ReplySURBs(tag))
	}
}

// Payload's methods hold sources to the contract.
func TestPayloadContract(t *testing.T) {
	var p Payload
	p.reset(newWireBuffer(), false, sphinx.SizeRegular)
	if room := cap(p.Buf()); room != (&Client{}).RepliablePacketCapacity(0) {
		t.Fatalf("room %d, want RepliablePacketCapacity(0)", room)
	}
	room, err := p.SetSURBs(2)
	if err != nil || room != (&Client{}).RepliablePacketCapacity(2) || cap(p.Buf()) != room {
		t.Fatalf("SetSURBs(2): %d, %v", room, err)
	}
	if _, err := p.SetSURBs(5); err == nil {
		t.Fatal("5 SURBs fit one packet")
	}
	if err := p.SetData(make([]byte, 3)); err == nil {
		t.Fatal("foreign buffer accepted")
	}
	if err := p.SetData(append(p.Buf(), make([]byte, room+1)...)); err == nil {
		t.Fatal("over-long data accepted")
	}
	if err := p.SetData(append(p.Buf(), "abc"...)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.SetSURBs(1); err == nil {
		t.Fatal("SetSURBs after SetData")
	}
	if got := string(p.Buf()); got != "abc" {
		t.Fatalf("Buf after SetData: %q", got)
	}
	p.reset(newWireBufferOf(sphinx.SizeExtended), true, sphinx.SizeExtended)
	if want := sphinx.ExtendedPayload - FragmentHeaderLen - 1; cap(p.Buf()) != want {
		t.Fatalf("extended reply room %d, want %d", cap(p.Buf()), want)
	}
	p.reset(newWireBuffer(), true, sphinx.SizeRegular)
	if cap(p.Buf()) != (&Client{}).ReplyCapacity() {
		t.Fatalf("reply room %d, want ReplyCapacity", cap(p.Buf()))
	}
	if _, err := p.SetSURBs(1); err == nil {
		t.Fatal("SURBs on a reply")
	}
}

// With the Poisson stream off, a stream pulls only while the gateway link
// has room: with directLinkWindow packets in the link, not copied out by its
// writer, nothing is pulled; each packet the writer takes lets one more in.
func TestStreamWaitsForLinkRoom(t *testing.T) {
	f := newFakeNet(t, 1, 1)
	f.keepOrder()
	a := f.connect(t, func(c *Config) { c.Loopix = &Loopix{} })
	b := f.connect(t, nil)
	// The test holds the whole window, as a link whose writer is stuck.
	for range directLinkWindow {
		a.linkRoom <- struct{}{}
	}
	src := &testSource{t: t}
	st, err := a.OpenStream(b.Address(), src)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	src.add(3)
	st.Wake()
	// A negative check needs a bound; a busy machine only makes a wrong
	// Pull less likely to show here, never a right one fail.
	time.Sleep(200 * time.Millisecond)
	if calls, _ := src.counts(); calls != 0 {
		t.Fatalf("%d Pulls with no room in the link", calls)
	}
	<-a.linkRoom // the writer took one packet
	for i := range 3 {
		m := receive(t, b, 20*time.Second)
		if !bytes.Equal(m.Data, src.payload(i)) {
			t.Fatalf("message %d is not payload %d", i, i)
		}
	}
	// Every token the stream took comes back (a lost one would stall the
	// stream for good): only the test's are left.
	waitFor(t, 10*time.Second, "the stream's link tokens back", func() bool {
		return len(a.linkRoom) == directLinkWindow-1
	})
}

// timedSource records when each of its packets was pulled.
type timedSource struct {
	*testSource
	mu sync.Mutex
	at []time.Time
}

func (s *timedSource) Pull(p *Payload) bool {
	now := time.Now()
	if !s.testSource.Pull(p) {
		return false
	}
	s.mu.Lock()
	s.at = append(s.at, now)
	s.mu.Unlock()
	return true
}

// A paced reply stream pulls its burst at once, then no faster than its
// interval, however much its source holds; a stream held by its pace still
// closes.
func TestReplyStreamPaced(t *testing.T) {
	f := newFakeNet(t, 1, 1)
	a := f.connect(t, nil)
	b := f.connect(t, func(c *Config) { c.SURBs = SURBPolicy{LowWater: 1} })
	var tag AnonymousSenderTag
	for range 5 { // 15 SURBs: 3 for the burst, 10 for the paced packets
		if err := a.SendRepliablePacket(context.Background(), b.Address(), []byte("surbs"), 3); err != nil {
			t.Fatal(err)
		}
		tag = receive(t, b, 10*time.Second).SenderTag
	}
	go func() {
		for range a.Receive() {
		}
	}()

	// A pace of an hour: the burst goes, then nothing.
	held := &testSource{t: t}
	st, err := b.OpenReplyStream(tag, held, nil)
	if err != nil {
		t.Fatal(err)
	}
	st.Pace(time.Hour, 3)
	held.add(10)
	st.Wake()
	waitFor(t, 10*time.Second, "the burst of 3", func() bool { _, sent := held.counts(); return sent == 3 })
	// A negative check needs a bound; a busy machine only makes a wrong
	// Pull less likely to show here, never a right one fail.
	time.Sleep(200 * time.Millisecond)
	st.Wake()
	time.Sleep(100 * time.Millisecond)
	if _, sent := held.counts(); sent != 3 {
		t.Fatalf("%d packets pulled at a pace of one an hour after a burst of 3", sent)
	}
	closed := make(chan struct{})
	go func() { st.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close hangs on a stream waiting for its pace")
	}

	// A pace of 20 ms without burst: the tenth packet is pulled at least
	// 9 intervals after the first (a busy machine only makes it later).
	const interval, n = 20 * time.Millisecond, 10
	src := &timedSource{testSource: &testSource{t: t}}
	st, err = b.OpenReplyStream(tag, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	st.Pace(interval, 1)
	src.add(n)
	st.Wake()
	waitFor(t, 20*time.Second, "the paced packets", func() bool { _, sent := src.counts(); return sent == n })
	src.mu.Lock()
	defer src.mu.Unlock()
	for i := 1; i < n; i++ {
		if d := src.at[i].Sub(src.at[0]); d < time.Duration(i)*interval {
			t.Fatalf("packet %d pulled %v after the first, want at least %v", i, d, time.Duration(i)*interval)
		}
	}
}

// ReplyInterval leaves room for the downstream's own cover and acks: for
// anonymous-plus (one 8.2 KB slot per 6 ms, 166.7/s), the extended cover
// takes 10 slots/s, the loop cover stream's 5/s and half the Poisson
// stream's 200/s come back as regular deliveries, 3 to a slot (35 slots/s):
// 121.7 slots/s left, 109.5 replies/s with 10% headroom, one per 9.13 ms.
func TestReplyInterval(t *testing.T) {
	plus := NymDefaults()
	plus.SendInterval = 5 * time.Millisecond
	plus.ExtendedReplies = true
	plus.ExtendedCoverInterval = 100 * time.Millisecond
	plus.DownstreamInterval = 6 * time.Millisecond
	if got, want := plus.ReplyInterval(), 9132*time.Microsecond; got < want-5*time.Microsecond || got > want+5*time.Microsecond {
		t.Errorf("anonymous-plus: %v, want %v", got, want)
	}
	// Nym's defaults at 200 regular slots/s: a reply takes a slot, and so
	// does each loop cover delivery: 200 - 5 - 25, × 0.9, 153/s.
	def := NymDefaults()
	def.DownstreamInterval = 5 * time.Millisecond
	if got, want := def.ReplyInterval(), 6536*time.Microsecond; got < want-5*time.Microsecond || got > want+5*time.Microsecond {
		t.Errorf("Nym's defaults: %v, want %v", got, want)
	}
	if got := NymDefaults().ReplyInterval(); got != 0 {
		t.Errorf("unshaped: %v, want 0", got)
	}
	starved := def
	starved.DownstreamInterval = time.Second // 1 slot/s, 5.5 of loop cover
	if got := starved.ReplyInterval(); got != 0 {
		t.Errorf("no slots left for replies: %v, want 0", got)
	}
}
