package gateway

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nym-go/nym/internal/leakcheck"
	"github.com/nym-go/nym/mixnet/gatewire"
	"github.com/nym-go/nym/mixnet/link"
	"github.com/nym-go/nym/mixnet/sphinx"
)

// regularPayload is a final hop's payload of a regular packet: the largest
// delivery a client with MinSlotLen slots takes.
func regularPayload(n int) []byte {
	p := make([]byte, sphinx.RegularPacketSize-sphinx.HeaderSize)
	copy(p, payloadN(n))
	return p
}

// One slot per tick, each the same length, whether the queue is empty, full
// or holds small messages that share a slot: the clock, not the traffic,
// sets what the link carries.
func TestPacerOneSlotPerTick(t *testing.T) {
	p := newPacer(time.Millisecond, gatewire.MinSlotLen, 8)
	// The frames are kept, never handed back: each slot is built in a
	// buffer of its own, and none is overwritten.
	var frames [][]byte
	write := func(f []byte, _, _ int) bool { frames = append(frames, f); return true }
	tick := func() {
		if !p.slot(write) {
			t.Fatal("slot not sent")
		}
	}
	const idle = 5
	for range idle {
		tick()
	}
	var queued int
	for i := range 20 {
		if p.offer((&gatewire.Deliver{Seq: uint64(i + 1), Payload: regularPayload(i)}).AppendBinary(nil)) == offerQueued {
			queued++
		}
	}
	if queued != 8 {
		t.Fatalf("queue took %d messages, want its bound 8", queued)
	}
	for range queued {
		tick()
	}
	ack := (&gatewire.Deliver{Seq: 99, Payload: make([]byte, sphinx.AckPacketSize-sphinx.HeaderSize)}).AppendBinary(nil)
	for range 5 {
		if p.offer(ack) != offerQueued {
			t.Fatal("ack not queued")
		}
	}
	tick() // all five acks fit one slot
	tick() // and this one is cover again

	if want := idle + queued + 2; len(frames) != want || int(p.slots.Load()) != want {
		t.Fatalf("%d frames (%d slots counted) for %d ticks", len(frames), p.slots.Load(), want)
	}
	var got []any
	for i, f := range frames {
		if len(f) != gatewire.MinSlotLen {
			t.Fatalf("frame %d is %d bytes, want %d", i, len(f), gatewire.MinSlotLen)
		}
		m, err := gatewire.Parse(f)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		for _, inner := range m.(*gatewire.Slot).Messages {
			im, err := gatewire.Parse(inner)
			if err != nil {
				t.Fatalf("frame %d: %v", i, err)
			}
			got = append(got, im)
		}
	}
	if len(got) != queued+5 {
		t.Fatalf("%d messages came out, %d went in", len(got), queued+5)
	}
	for i := range queued {
		if d := got[i].(*gatewire.Deliver); d.Seq != uint64(i+1) {
			t.Fatalf("message %d has seq %d: out of order", i, d.Seq)
		}
	}
	if c := p.covers.Load(); c != idle+1 {
		t.Fatalf("%d cover slots, want %d", c, idle+1)
	}
	if p.offer(make([]byte, gatewire.MinSlotLen)) != offerTooBig {
		t.Fatal("a message longer than a slot holds was queued")
	}
}

// A slot the link does not take keeps its messages for the next one.
func TestPacerLinkFullKeepsMessages(t *testing.T) {
	p := newPacer(time.Millisecond, gatewire.MinSlotLen, 4)
	msg := (&gatewire.Deliver{Seq: 1, Payload: regularPayload(1)}).AppendBinary(nil)
	p.offer(msg)
	if p.slot(func(_ []byte, n, _ int) bool { return n == 0 }) {
		t.Fatal("slot reported sent")
	}
	var out []byte
	if !p.slot(func(f []byte, _, _ int) bool { out = f; return true }) {
		t.Fatal("slot not sent")
	}
	s, _ := gatewire.Parse(out)
	if ms := s.(*gatewire.Slot).Messages; len(ms) != 1 || !bytes.Equal(ms[0], msg) {
		t.Fatalf("slot carried %d messages, want the one kept", len(ms))
	}
}

// Small messages behind one that does not fit the rest of a slot still go
// in it: acks interleaved with full-size replies (a download at
// anonymous-plus sends ~200 acks/s among its 8 KiB replies) must not each
// cost a slot of their own. The head of the queue always goes first, so a
// large message is never passed over by a stream of small ones.
func TestPacerPacksSmallAroundLarge(t *testing.T) {
	p := newPacer(time.Millisecond, gatewire.MinSlotLen, 16)
	ack := func(i int) []byte {
		return (&gatewire.Deliver{Seq: uint64(i), Payload: make([]byte, sphinx.AckPacketSize-sphinx.HeaderSize)}).AppendBinary(nil)
	}
	full := func(i int) []byte {
		return (&gatewire.Deliver{Seq: uint64(i), Payload: regularPayload(i)}).AppendBinary(nil)
	}
	// ack, full, ack, full, ack, full: three fulls need three slots, and
	// the acks fit beside none of them but share one slot.
	for i := range 3 {
		for _, m := range [][]byte{ack(2 * i), full(2*i + 1)} {
			if p.offer(m) != offerQueued {
				t.Fatal("not queued")
			}
		}
	}
	var slots [][]int // the Seqs each slot carried
	for len(p.queue) > 0 && len(slots) < 10 {
		var out []byte
		if !p.slot(func(f []byte, _, _ int) bool { out = append([]byte(nil), f...); p.release(f); return true }) {
			t.Fatal("slot not sent")
		}
		s, err := gatewire.Parse(out)
		if err != nil {
			t.Fatal(err)
		}
		var seqs []int
		for _, m := range s.(*gatewire.Slot).Messages {
			d, err := gatewire.Parse(m)
			if err != nil {
				t.Fatal(err)
			}
			seqs = append(seqs, int(d.(*gatewire.Deliver).Seq))
		}
		slots = append(slots, seqs)
	}
	if len(slots) != 4 {
		t.Fatalf("6 messages took %d slots %v, want 4: the three acks in the first", len(slots), slots)
	}
	if got := fmt.Sprint(slots); got != "[[0 2 4] [1] [3] [5]]" {
		t.Fatalf("slots carried %s, want [[0 2 4] [1] [3] [5]]", got)
	}
}

// The clock's slot, once the link's writer hands each frame back, allocates
// nothing, and a buffer is built in again only once its frame was let go.
func TestPacerReusesSlotBuffers(t *testing.T) {
	p := newPacer(time.Millisecond, gatewire.MinSlotLen, 8)
	msg := (&gatewire.Deliver{Seq: 1, Payload: regularPayload(1)}).AppendBinary(nil)
	var held [][]byte // frames the link still reads
	write := func(f []byte, _, _ int) bool { held = append(held, f); return true }
	letGo := func() {
		for _, f := range held {
			p.done(f)
		}
		held = held[:0]
	}
	// The link holds three frames at once: the third has a buffer of
	// its own, and the two before are intact.
	for range 3 {
		p.offer(msg)
		p.slot(write)
	}
	for i, f := range held {
		s, err := gatewire.Parse(f)
		if err != nil || len(s.(*gatewire.Slot).Messages) != 1 {
			t.Fatalf("frame %d held by the link was overwritten: %v", i, err)
		}
	}
	letGo()
	allocs := testing.AllocsPerRun(100, func() {
		p.offer(msg)
		p.slot(write)
		letGo()
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per slot, want 0", allocs)
	}
}

// shapedClient is a client on a real link that asked for a shaped
// downstream: it records every frame's length and unpacks the slots.
type shapedClient struct {
	conn    *link.Conn
	addr    [32]byte
	lengths chan int
	msgs    chan any
}

func dialShaped(t *testing.T, tg *testGateway, interval time.Duration) *shapedClient {
	t.Helper()
	sc := &shapedClient{lengths: make(chan int, 1<<16), msgs: make(chan any, 1<<16)}
	key := newKey(t)
	conn, err := link.Dial(context.Background(), tg.addr, tg.key.Public, link.Config{
		Static: key,
		Logger: testLogger(t),
		Handler: func(c *link.Conn, f link.Frame) error {
			sc.lengths <- len(f.Payload)
			m, err := gatewire.Parse(f.Payload)
			if err != nil {
				return err
			}
			s, ok := m.(*gatewire.Slot)
			if !ok {
				sc.msgs <- m
				return nil
			}
			for _, inner := range s.Messages {
				im, err := gatewire.Parse(inner)
				if err != nil {
					return err
				}
				if d, ok := im.(*gatewire.Deliver); ok {
					c.Send(link.Frame{Kind: link.KindClient, Payload: (&gatewire.Received{Seq: d.Seq}).AppendBinary(nil)})
				}
				sc.msgs <- im
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	sc.conn, sc.addr = conn, key.Public
	conn.Send(link.Frame{Kind: link.KindClient, Payload: (&gatewire.Shape{Interval: interval, FrameLen: gatewire.MinSlotLen}).AppendBinary(nil)})
	waitFor(t, "client registered", func() bool {
		st, ok := tg.Client(key.Public)
		return ok && st.Connected
	})
	return sc
}

// shapedNext returns the next message of type T, skipping others (the greeting).
func shapedNext[T any](t *testing.T, sc *shapedClient) T {
	t.Helper()
	for {
		select {
		case m := <-sc.msgs:
			if v, ok := m.(T); ok {
				return v
			}
		case <-time.After(waitTimeout):
			var zero T
			t.Fatalf("timed out waiting for a %T", zero)
			return zero
		}
	}
}

// The attack: a watcher of the client's link sees each delivery as a frame
// of its own size, when it arrives. With the downstream shaped, every frame
// after the grant is one length, and a burst far beyond the queue reaches
// the client whole and in order, through the store. (Before shaping the
// gateway took Shape for a malformed message and pushed each delivery in a
// frame of its own size: this test failed.)
func TestShapedDownstreamBurst(t *testing.T) {
	leakcheck.Check(t)
	tg := startGateway(t, t.TempDir(), link.KeyPair{}, func(c *Config) { c.DownstreamQueue = 4 })
	sc := dialShaped(t, tg, 2*time.Millisecond)
	grant := shapedNext[*gatewire.Shape](t, sc)
	if grant.Interval != 2*time.Millisecond || grant.FrameLen != gatewire.MinSlotLen {
		t.Fatalf("granted %+v", grant)
	}
	const n = 100
	for i := range n {
		tg.deliver(sc.addr, id(byte(i)), regularPayload(i))
	}
	for i := range n {
		d := shapedNext[*gatewire.Deliver](t, sc)
		if !bytes.Equal(d.Payload, regularPayload(i)) {
			t.Fatalf("delivery %d: got %q", i, d.Payload[:12])
		}
	}
	if tg.metric("nym_gateway_stored_total") == 0 {
		t.Error("a burst of 100 over a queue of 4 never went to the store")
	}
	tg.waitMetric("nym_gateway_shaped_cover_slots_total", tg.metric("nym_gateway_shaped_cover_slots_total")+3)
	// Every frame since the greeting (which the gateway sends on
	// connecting, before it could know the client wants shaping) is one
	// slot of the one length.
	first := true
	for len(sc.lengths) > 0 {
		l := <-sc.lengths
		if first && l != gatewire.MinSlotLen {
			continue // the greeting
		}
		first = false
		if l != gatewire.MinSlotLen {
			t.Fatalf("a frame of %d bytes on a downstream shaped to %d", l, gatewire.MinSlotLen)
		}
	}
}

// The node's cap: a client that asks for more than MaxDownstreamBytes gets
// a longer interval, and a gateway that refuses shaping grants none.
func TestShapeGrantCapped(t *testing.T) {
	leakcheck.Check(t)
	for _, tc := range []struct {
		max  float64
		want time.Duration
	}{
		{max: float64(gatewire.MinSlotLen) * 100, want: 10 * time.Millisecond}, // 100 slots/s
		{max: -1, want: 0},
	} {
		t.Run(fmt.Sprint(tc.max), func(t *testing.T) {
			tg := startGateway(t, t.TempDir(), link.KeyPair{}, func(c *Config) { c.MaxDownstreamBytes = tc.max })
			sc := dialShaped(t, tg, time.Millisecond)
			if g := shapedNext[*gatewire.Shape](t, sc); g.Interval != tc.want {
				t.Fatalf("granted %v, want %v", g.Interval, tc.want)
			}
		})
	}
}
