package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/nym-go/nym/internal/leakcheck"
	"github.com/nym-go/nym/internal/testnet"
)

// These tests run the client against fakeNet: real gateways, in-memory mixes.

func TestFakeNetSendSizes(t *testing.T) {
	f := newFakeNet(t, 2, 1)
	// The network loses nothing, so a resend could only come from an ack
	// later than the timer: give the timer minutes, not the default 1.5 s
	// of slack, which a loaded machine under -race overran. The deadlines
	// below guard against hangs: 1 MiB took over 30 s at load 14.
	patient := &Retransmit{Max: 10, Multiplier: 1.5, Slack: 3 * time.Minute}
	a := f.connect(t, func(c *Config) { c.Gateway = f.topo.Entry[0].Identity; c.Retransmit = patient })
	b := f.connect(t, func(c *Config) { c.Gateway = f.topo.Exit[0].Identity })
	for _, size := range []int{0, 1, FragmentCapacity, FragmentCapacity + 1, 10 << 10, 1 << 20} {
		msg := randomBytes(size)
		if err := a.Send(context.Background(), b.Address(), msg); err != nil {
			t.Fatal(err)
		}
		if m := receive(t, b, 3*time.Minute); !bytes.Equal(m.Data, msg) {
			t.Fatalf("size %d: received %d bytes that differ", size, len(m.Data))
		}
	}
	flush(t, a, 3*time.Minute)
	if s := a.Stats(); s.Retransmissions != 0 || s.FragmentsLost != 0 {
		t.Fatalf("losses on a lossless network: %+v", s)
	}
}

func TestFakeNetReplies(t *testing.T) {
	f := newFakeNet(t, 2, 1)
	a := f.connect(t, func(c *Config) { c.Gateway = f.topo.Entry[0].Identity })
	b := f.connect(t, func(c *Config) {
		c.Gateway = f.topo.Exit[0].Identity
		c.SURBs = SURBPolicy{LowWater: 2, Request: 3}
	})
	if err := a.SendWithReplySURBs(context.Background(), b.Address(), []byte("q"), 3); err != nil {
		t.Fatal(err)
	}
	// Deadlines against hangs, longer on a loaded machine: a reply took
	// 8.4 s of the fixed 10 s at load 30-40 under -race.
	wait := testnet.LoadScaled(10 * time.Second)
	var m Message
	select {
	case m = <-b.Receive():
	case <-time.After(wait):
		t.Fatalf("nothing received; sender %+v", a.Stats())
	}
	// Ten replies from three SURBs: the replier has to ask for more, several
	// times, and one reply needs three packets.
	for i := range 10 {
		msg := []byte(fmt.Sprint("reply ", i))
		if i == 5 {
			msg = randomBytes(2*ReplyFragmentCapacity + 1)
		}
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		if err := b.Reply(ctx, m.SenderTag, msg); err != nil {
			t.Fatalf("reply %d: %v; stats %+v", i, err, b.Stats())
		}
		cancel()
		r := receive(t, a, wait)
		if !bytes.Equal(r.Data, msg) || !r.IsReply || r.From != b.Address() {
			t.Fatalf("reply %d arrived as %d bytes, reply=%v from %v", i, len(r.Data), r.IsReply, r.From)
		}
	}
	s := b.Stats()
	if s.SURBRequestsSent == 0 || a.Stats().SURBRequestsReceived == 0 {
		t.Fatalf("no SURB requests: replier %+v", s)
	}
	if _, err := b.surbs.takeForReply(AnonymousSenderTag{9}, 1, time.Now()); err == nil {
		t.Fatal("reply to an unknown tag")
	}
}

func TestFakeNetDeadMix(t *testing.T) {
	f := newFakeNet(t, 1, 2)
	quick := func(c *Config) { c.Retransmit = &Retransmit{Max: 20, Multiplier: 1.5, Slack: 200 * time.Millisecond} }
	a := f.connect(t, quick)
	b := f.connect(t, quick)
	f.mixes[f.topo.Layers[0][0].Identity].dead.Store(true)
	msg := randomBytes(100 << 10)
	if err := a.Send(context.Background(), b.Address(), msg); err != nil {
		t.Fatal(err)
	}
	// The wait lasts while the sender's fragments are acknowledged: at load
	// 30-40 under -race a fixed 30 s passed before the 100 KiB arrived.
	stall := testnet.LoadScaled(30 * time.Second)
	if m := receiveWhileAcked(t, b, a, stall); !bytes.Equal(m.Data, msg) {
		t.Fatal("message differs")
	}
	flushWhileAcked(t, a, stall)
	s := a.Stats()
	if s.Retransmissions == 0 || s.FragmentsLost != 0 {
		t.Fatalf("stats %+v", s)
	}
	t.Logf("%d fragments, %d retransmissions", s.AcksReceived, s.Retransmissions)
}

func TestFakeNetOffline(t *testing.T) {
	f := newFakeNet(t, 1, 1)
	id := newIdentity(t)
	b := f.connect(t, func(c *Config) { c.Identity = id })
	addr := b.Address()
	b.Close()
	a := f.connect(t, nil)
	for i := range 5 {
		if err := a.Send(context.Background(), addr, []byte(fmt.Sprint("m", i))); err != nil {
			t.Fatal(err)
		}
		flush(t, a, 10*time.Second)
	}
	b2 := f.connect(t, func(c *Config) { c.Identity = id })
	for i := range 5 {
		if m := receive(t, b2, 10*time.Second); string(m.Data) != fmt.Sprint("m", i) {
			t.Fatalf("message %d is %q", i, m.Data)
		}
	}
	expectNothing(t, b2, 200*time.Millisecond)
}

// With the Poisson stream on, the client keeps sending even when idle, every
// packet of one size, and real packets take the place of cover when queued.
// It waits on packets, not on the clock: the rate itself is
// TestTimingFakeNetPoissonRate's to measure.
func TestFakeNetPoissonStream(t *testing.T) {
	f := newFakeNet(t, 1, 1)
	rec := &shapeRecorder{sizes: map[int]int{}}
	lp := Loopix{HopDelay: time.Millisecond, SendInterval: 40 * time.Millisecond, CoverInterval: 200 * time.Millisecond}
	a := f.connect(t, func(c *Config) { c.Loopix = &lp; c.hooks = &testHooks{onSend: rec.onSend} })
	b := f.connect(t, nil)
	var idle struct{ real, cover, sizes int }
	waitFor(t, time.Minute, "20 cover packets from an idle client", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		idle.real, idle.cover, idle.sizes = rec.real, rec.cover, len(rec.sizes)
		return rec.cover >= 20
	})
	if idle.real != 0 || idle.sizes != 1 {
		t.Fatalf("idle: %d real, %d cover, %d sizes; want no real packet and one size", idle.real, idle.cover, idle.sizes)
	}
	msg := randomBytes(20 * FragmentCapacity)
	if err := a.Send(context.Background(), b.Address(), msg); err != nil {
		t.Fatal(err)
	}
	if m := receive(t, b, time.Minute); !bytes.Equal(m.Data, msg) {
		t.Fatal("message differs")
	}
	if real, _, sizes := rec.take(); real < 20 || len(sizes) != 1 {
		t.Fatalf("sending 20 fragments: %d real packets, sizes %v; want 20 or more (acks may resend) of one size", real, sizes)
	}
	waitFor(t, time.Minute, "loop cover to come back", func() bool { return a.Stats().CoverReceived > 10 })
}

// TestTimingFakeNetPoissonRate measures the idle stream's rate. A wall-clock
// measurement: make test runs it apart, without the race detector (which
// makes Sphinx too slow for the rate on a busy machine), with one retry.
func TestTimingFakeNetPoissonRate(t *testing.T) {
	if testing.Short() {
		t.Skip("timing test")
	}
	if raceEnabled {
		t.Skip("timing test: run without -race (make test does)")
	}
	f := newFakeNet(t, 1, 1)
	rec := &shapeRecorder{sizes: map[int]int{}}
	lp := Loopix{HopDelay: time.Millisecond, SendInterval: 40 * time.Millisecond, CoverInterval: 200 * time.Millisecond}
	f.connect(t, func(c *Config) { c.Loopix = &lp; c.hooks = &testHooks{onSend: rec.onSend} })
	rec.take()
	start := time.Now()
	time.Sleep(3 * time.Second)
	real, cover, sizes := rec.take()
	elapsed := time.Since(start)
	// 30 packets/s: 90 expected in 3 s, standard deviation 9.5; allow 3σ.
	want := 30 * elapsed.Seconds()
	if sd := math.Sqrt(want); real != 0 || math.Abs(float64(cover)-want) > 3*sd || len(sizes) != 1 {
		t.Fatalf("%v idle: %d real, %d cover, sizes %v; want %.0f±%.0f cover of one size", elapsed, real, cover, sizes, want, 3*sd)
	}
}

// SendRepliablePacket carries exactly RepliablePacketCapacity bytes in one
// unacknowledged packet, SURBs included, and the answer comes back through
// them.
func TestFakeNetRepliablePacket(t *testing.T) {
	f := newFakeNet(t, 1, 1)
	a := f.connect(t, nil)
	b := f.connect(t, nil)
	for _, surbs := range []int{0, 1, 3} {
		capacity := a.RepliablePacketCapacity(surbs)
		if err := a.SendRepliablePacket(context.Background(), b.Address(), make([]byte, capacity+1), surbs); !errors.Is(err, ErrMessageTooLarge) {
			t.Fatalf("%d SURBs: %d bytes accepted, capacity %d: %v", surbs, capacity+1, capacity, err)
		}
		data := randomBytes(capacity)
		before := a.Stats().RealPacketsSent
		if err := a.SendRepliablePacket(context.Background(), b.Address(), data, surbs); err != nil {
			t.Fatal(err)
		}
		m := receive(t, b, 10*time.Second)
		if !bytes.Equal(m.Data, data) {
			t.Fatal("packet differs")
		}
		// The sender counts a packet after handing it to its link, so b
		// can hold it before the count moves: wait for the count.
		waitFor(t, 10*time.Second, fmt.Sprintf("%d SURBs: the packet counted", surbs), func() bool {
			return a.Stats().RealPacketsSent-before >= 1
		})
		if sent := a.Stats().RealPacketsSent - before; sent != 1 {
			t.Fatalf("%d SURBs: %d packets sent, want 1", surbs, sent)
		}
		if surbs == 0 {
			continue
		}
		reply := randomBytes(b.ReplyCapacity())
		if err := b.Reply(context.Background(), m.SenderTag, reply); err != nil {
			t.Fatal(err)
		}
		if r := receive(t, a, 10*time.Second); !bytes.Equal(r.Data, reply) || !r.IsReply {
			t.Fatal("reply differs")
		}
	}
	if s := a.Stats(); s.AwaitingAck != 0 || s.Retransmissions != 0 {
		t.Fatalf("unacknowledged packets tracked: %+v", s)
	}
	if FragmentCapacity != 1568 || a.RepliablePacketCapacity(0) != 1549 {
		t.Fatalf("capacity %d / %d, documented 1568 / 1549", FragmentCapacity, a.RepliablePacketCapacity(0))
	}
}

// SendRepliablePacket with no SURBs still carries the sender tag, the same
// as an earlier packet that brought SURBs, and the recipient answers it
// through those: the way a tunnel sends full data packets and tops the
// SURBs up separately.
func TestFakeNetRepliablePacketNoSURBs(t *testing.T) {
	f := newFakeNet(t, 1, 1)
	a := f.connect(t, nil)
	// b must not ask for more SURBs: all its replies go through the three
	// of the first packet.
	b := f.connect(t, func(c *Config) { c.SURBs = SURBPolicy{LowWater: 1} })
	if got, want := a.RepliablePacketCapacity(0), FragmentCapacity-19; got != want {
		t.Fatalf("capacity with a tag and no SURBs %d, want %d", got, want)
	}
	if got, want := a.RepliablePacketCapacity(2), FragmentCapacity-19-2*replySURBSize; got != want {
		t.Fatalf("capacity with 2 SURBs %d, want %d", got, want)
	}
	capacity := a.RepliablePacketCapacity(0)
	if err := a.SendRepliablePacket(context.Background(), b.Address(), make([]byte, capacity+1), 0); !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("%d bytes accepted, capacity %d: %v", capacity+1, capacity, err)
	}

	// First the SURBs, with a little data.
	if err := a.SendRepliablePacket(context.Background(), b.Address(), []byte("surbs"), 3); err != nil {
		t.Fatal(err)
	}
	first := receive(t, b, 10*time.Second)
	if first.SenderTag.IsZero() || string(first.Data) != "surbs" {
		t.Fatalf("first packet: tag %s, data %q", first.SenderTag, first.Data)
	}
	// Then full packets without SURBs: same tag, and each answered through
	// one of the SURBs given before.
	for i := range 2 {
		data := randomBytes(capacity)
		before := a.Stats()
		if err := a.SendRepliablePacket(context.Background(), b.Address(), data, 0); err != nil {
			t.Fatal(err)
		}
		m := receive(t, b, 10*time.Second)
		if !bytes.Equal(m.Data, data) {
			t.Fatalf("packet %d differs", i)
		}
		if m.SenderTag != first.SenderTag {
			t.Fatalf("packet %d: tag %s, want %s", i, m.SenderTag, first.SenderTag)
		}
		waitFor(t, 10*time.Second, fmt.Sprintf("packet %d counted", i), func() bool {
			return a.Stats().RealPacketsSent-before.RealPacketsSent >= 1
		})
		if s := a.Stats(); s.RealPacketsSent-before.RealPacketsSent != 1 || s.SURBsCreated != before.SURBsCreated {
			t.Fatalf("packet %d: %d packets, %d SURBs made; want 1, 0", i,
				s.RealPacketsSent-before.RealPacketsSent, s.SURBsCreated-before.SURBsCreated)
		}
		reply := randomBytes(b.ReplyCapacity())
		if err := b.Reply(context.Background(), m.SenderTag, reply); err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
		if r := receive(t, a, 10*time.Second); !bytes.Equal(r.Data, reply) || !r.IsReply || r.From != b.Address() {
			t.Fatalf("reply %d differs or is not a reply from b", i)
		}
	}
	if s := b.Stats(); s.SURBsReceived != 3 || s.SURBRequestsSent != 0 {
		t.Fatalf("replier: %d SURBs received, %d requests sent; want 3, 0", s.SURBsReceived, s.SURBRequestsSent)
	}
	if s := a.Stats(); s.AwaitingAck != 0 || s.Retransmissions != 0 {
		t.Fatalf("unacknowledged packets tracked: %+v", s)
	}
}

// A client can send to itself, and Close stops everything: the Receive
// channel closes and sending fails.
func TestFakeNetSelfAndClose(t *testing.T) {
	leakcheck.Check(t) // every goroutine the client started ends with Close
	f := newFakeNet(t, 1, 1)
	a := f.connect(t, nil)
	if err := a.Send(context.Background(), a.Address(), []byte("me")); err != nil {
		t.Fatal(err)
	}
	if m := receive(t, a, 10*time.Second); string(m.Data) != "me" {
		t.Fatalf("got %q", m.Data)
	}
	nowhere := a.Address()
	nowhere.Gateway[0] ^= 1
	if err := a.Send(context.Background(), nowhere, []byte("x")); !errors.Is(err, ErrNoRoute) {
		t.Fatalf("send via an unknown gateway: %v", err)
	}
	a.Close()
	select {
	case _, ok := <-a.Receive():
		if ok {
			t.Fatal("message after Close")
		}
	case <-time.After(time.Second):
		t.Fatal("Receive channel not closed by Close")
	}
	if err := a.Send(context.Background(), a.Address(), []byte("x")); err == nil {
		t.Fatal("Send after Close succeeded")
	}
	a.Close() // twice is fine
}

// Queued counts what waits for a Poisson slot, not what was sent and waits
// for its ack: a caller that keeps the client's queue short (the VPN) must
// not stall behind acknowledgements.
func TestFakeNetQueuedExcludesAwaitingAck(t *testing.T) {
	f := newFakeNet(t, 1, 1)
	// A slot every 100 ms and a mean hop delay of 300 ms: acks take far
	// longer than slots, so sent fragments pile up awaiting acks.
	lp := Loopix{HopDelay: 300 * time.Millisecond, SendInterval: 100 * time.Millisecond}
	// No resends: at load 12 under -race the default timer fired, and the
	// resend of a fragment acknowledged meanwhile still counted as queued
	// after Flush, until a builder dropped it.
	a := f.connect(t, func(c *Config) {
		c.Loopix = &lp
		c.Retransmit = &Retransmit{Max: 10, Multiplier: 1.5, Slack: 3 * time.Minute}
	})
	b := f.connect(t, nil)
	msg := randomBytes(8 * FragmentCapacity)
	if err := a.Send(context.Background(), b.Address(), msg); err != nil {
		t.Fatal(err)
	}
	s := a.Stats()
	if s.Queued < 5 || s.Queued > s.InFlight {
		t.Fatalf("just after Send: %d queued, %d in flight; want most of the 9 fragments queued", s.Queued, s.InFlight)
	}
	var sent Stats
	waitFor(t, time.Minute, "every fragment sent", func() bool {
		sent = a.Stats()
		return sent.Queued == 0
	})
	// Acks take seconds here: the last fragments are still unacknowledged.
	if sent.AwaitingAck == 0 {
		t.Fatalf("queue empty: nothing awaits an ack, %d in flight", sent.InFlight)
	}
	receive(t, b, 3*time.Minute)
	flush(t, a, 3*time.Minute)
	if s := a.Stats(); s.Queued != 0 || s.InFlight != 0 {
		t.Fatalf("after flush: %d queued, %d in flight", s.Queued, s.InFlight)
	}
}
