package mixnode

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nym-go/nym/mixnet/sphinx"
)

func TestForwardsToNextHop(t *testing.T) {
	mix, next := newNode(t), newNode(t)
	h := startMixer(t, nil)
	h.mustSetKeys(t, RotationKey{Rotation: 4, Key: mix.key})

	msg := []byte("through the mix")
	if !h.Submit(packetVia(t, mix.key, 2*time.Millisecond, next, msg), false) {
		t.Fatal("Submit refused the packet")
	}
	openAt(t, next, h.next(t), msg)
	if got := h.metric(t, "nym_mixnode_packets_forwarded_total", ""); got != 1 {
		t.Errorf("forwarded = %v, want 1", got)
	}
	if got := h.metric(t, "nym_mixnode_packets_received_total", ""); got != 1 {
		t.Errorf("received = %v, want 1", got)
	}
}

func TestReplayDropped(t *testing.T) {
	mix, next := newNode(t), newNode(t)
	h := startMixer(t, nil)
	h.mustSetKeys(t, RotationKey{Rotation: 4, Key: mix.key})

	pkt := packetVia(t, mix.key, 0, next, []byte("once"))
	replayed := bytes.Clone(pkt)
	h.Submit(pkt, false)
	h.next(t)
	h.Submit(replayed, false)
	waitFor(t, "replay drop", func() bool { return h.dropped(t, "replay") == 1 })
	if got := h.metric(t, "nym_mixnode_packets_forwarded_total", ""); got != 1 {
		t.Errorf("forwarded = %v, want 1", got)
	}
	if len(h.out) != 0 {
		t.Error("the replayed packet was forwarded")
	}
}

func TestTamperedDropped(t *testing.T) {
	mix, next := newNode(t), newNode(t)
	h := startMixer(t, nil)
	h.mustSetKeys(t, RotationKey{Rotation: 4, Key: mix.key})

	for name, tamper := range map[string]func([]byte) []byte{
		"alpha":     func(p []byte) []byte { p[3] ^= 1; return p },
		"mac":       func(p []byte) []byte { p[sphinx.GroupElement] ^= 1; return p },
		"beta":      func(p []byte) []byte { p[100] ^= 0x80; return p },
		"truncated": func(p []byte) []byte { return p[:len(p)-1] },
		"empty":     func(p []byte) []byte { return nil },
	} {
		h.Submit(tamper(packetVia(t, mix.key, 0, next, []byte(name))), false)
	}
	waitFor(t, "bad packet drops", func() bool { return h.dropped(t, "bad_packet") == 5 })
	if got := h.metric(t, "nym_mixnode_packets_forwarded_total", ""); got != 0 {
		t.Errorf("forwarded %v tampered packets", got)
	}
}

func TestKeyRotation(t *testing.T) {
	next := newNode(t)
	k6, k7, k8 := sphinx.GenerateKey(), sphinx.GenerateKey(), sphinx.GenerateKey()
	h := startMixer(t, nil)

	// Overlap: rotations 6 (even) and 7 (odd) both held.
	h.mustSetKeys(t, RotationKey{6, k6}, RotationKey{7, k7})
	old := packetVia(t, k6, 0, next, []byte("rotation 6"))
	cur := packetVia(t, k7, 0, next, []byte("rotation 7"))
	curCopy := bytes.Clone(cur)
	h.Submit(old, false)
	if f := h.next(t); f.odd {
		t.Error("rotation 6 packet forwarded with odd parity")
	} else {
		openAt(t, next, f, []byte("rotation 6"))
	}
	h.Submit(cur, true)
	if f := h.next(t); !f.odd {
		t.Error("rotation 7 packet forwarded with even parity")
	} else {
		openAt(t, next, f, []byte("rotation 7"))
	}

	// A packet with the wrong parity fails the MAC of the other key.
	h.Submit(packetVia(t, k6, 0, next, []byte("wrong parity")), true)
	waitFor(t, "wrong-parity drop", func() bool { return h.dropped(t, "bad_packet") == 1 })

	// Rotation 6 ends: its packets are refused, rotation 7 keeps its filter.
	h.mustSetKeys(t, RotationKey{7, k7})
	h.Submit(packetVia(t, k6, 0, next, []byte("too late")), false)
	waitFor(t, "unknown-key drop", func() bool { return h.dropped(t, "unknown_key") == 1 })
	h.Submit(curCopy, true)
	waitFor(t, "replay across SetKeys", func() bool { return h.dropped(t, "replay") == 1 })

	// Rotation 8 takes the even slot with a fresh filter; a late rotation-6
	// packet now meets the wrong key.
	h.mustSetKeys(t, RotationKey{7, k7}, RotationKey{8, k8})
	h.Submit(packetVia(t, k8, 0, next, []byte("rotation 8")), false)
	openAt(t, next, h.next(t), []byte("rotation 8"))
	h.Submit(packetVia(t, k6, 0, next, []byte("stale")), false)
	waitFor(t, "stale-key drop", func() bool { return h.dropped(t, "bad_packet") == 2 })
	if len(h.out) != 0 {
		t.Error("a refused packet was forwarded")
	}
}

func TestSetKeysRejects(t *testing.T) {
	h := startMixer(t, nil)
	k := sphinx.GenerateKey
	for name, keys := range map[string][]RotationKey{
		"three":       {{1, k()}, {2, k()}, {3, k()}},
		"same parity": {{2, k()}, {4, k()}},
		"nil key":     {{2, nil}},
	} {
		if err := h.SetKeys(keys...); err == nil {
			t.Errorf("%s: SetKeys succeeded", name)
		}
	}
	// A failed SetKeys leaves the ring as it was: empty.
	if h.keys.lookup(false) != nil || h.keys.lookup(true) != nil {
		t.Error("failed SetKeys installed keys")
	}
}

func TestOrderFollowsDelays(t *testing.T) {
	mix := newNode(t)
	nextKey := newNode(t).key.PublicKey()
	h := startMixer(t, nil)
	h.mustSetKeys(t, RotationKey{Rotation: 0, Key: mix.key})

	// Submitted with decreasing delays, 100 ms apart, after a base of 2 s:
	// the base is the time all six have to be unwrapped and held (under
	// -race at load 14, six unwraps took more than the 15 ms apart the
	// delays once were), and once held they leave in deadline order however
	// late the delay stage wakes. The spacing covers gaps between Submits.
	const n = 6
	pkts := make([][]byte, n)
	for i := range pkts {
		delay := 2*time.Second + time.Duration(n-i)*100*time.Millisecond
		pkts[i] = packetTo(t, mix.key, delay, indexAddr(i), nextKey)
	}
	for _, p := range pkts {
		h.Submit(p, false)
	}
	for want := n - 1; want >= 0; want-- {
		if got := addrIndex(h.next(t).next); got != want {
			t.Fatalf("packet %d came out where packet %d was due", got, want)
		}
	}
}

func TestMaxDelayCap(t *testing.T) {
	mix, next := newNode(t), newNode(t)
	h := startMixer(t, func(c *Config) { c.MaxDelay = 20 * time.Millisecond })
	h.mustSetKeys(t, RotationKey{Rotation: 0, Key: mix.key})
	start := time.Now()
	h.Submit(packetVia(t, mix.key, time.Hour, next, []byte("capped")), false)
	openAt(t, next, h.next(t), []byte("capped"))
	if held := time.Since(start); held < 20*time.Millisecond || held > 5*time.Second {
		t.Errorf("held %v, want the 20 ms cap", held)
	}
}

func TestHeldFull(t *testing.T) {
	mix := newNode(t)
	nextKey := newNode(t).key.PublicKey()
	h := startMixer(t, func(c *Config) { c.MaxHeld = 2 })
	h.mustSetKeys(t, RotationKey{Rotation: 0, Key: mix.key})
	for i := range 5 {
		h.Submit(packetTo(t, mix.key, time.Hour, indexAddr(i), nextKey), false)
	}
	waitFor(t, "held-full drops", func() bool { return h.dropped(t, "held_full") == 3 })
	if got := h.metric(t, "nym_mixnode_held_packets", ""); got != 2 {
		t.Errorf("held = %v, want 2", got)
	}
	h.shutdown(t)
	if got := h.dropped(t, "shutdown"); got != 2 {
		t.Errorf("dropped at shutdown = %v, want the 2 held", got)
	}
	if got := h.metric(t, "nym_mixnode_held_packets", ""); got != 0 {
		t.Errorf("held after shutdown = %v, want 0", got)
	}
}

func TestQueueFull(t *testing.T) {
	m, err := New(Config{QueueLen: 2, Forward: func([32]byte, []byte, bool) {}})
	if err != nil {
		t.Fatal(err)
	}
	// Not running: nothing drains the queue.
	for i, want := range []bool{true, true, false, false} {
		if got := m.Submit(make([]byte, sphinx.RegularPacketSize), false); got != want {
			t.Errorf("Submit %d = %v, want %v", i, got, want)
		}
	}
}

func TestFinalHop(t *testing.T) {
	gw := newNode(t)
	route := []sphinx.Hop{{Address: gw.addr, Key: gw.key.PublicKey()}}
	dest := sphinx.Destination{Address: [32]byte{'c', 'l', 'i'}, ID: [16]byte{7}}
	build := func(msg string) []byte {
		pkt, err := sphinx.NewPacket(route, dest, []byte(msg), sphinx.SizeRegular)
		if err != nil {
			t.Fatal(err)
		}
		return pkt
	}

	t.Run("mix node drops", func(t *testing.T) {
		h := startMixer(t, nil)
		h.mustSetKeys(t, RotationKey{Rotation: 1, Key: gw.key})
		h.Submit(build("lost"), true)
		waitFor(t, "final-at-mix drop", func() bool { return h.dropped(t, "final_at_mix") == 1 })
	})
	t.Run("gateway delivers", func(t *testing.T) {
		delivered := make(chan sphinx.Processed, 1)
		h := startMixer(t, func(c *Config) { c.Deliver = func(p sphinx.Processed) { delivered <- p } })
		h.mustSetKeys(t, RotationKey{Rotation: 1, Key: gw.key})
		h.Submit(build("for you"), true)
		select {
		case p := <-delivered:
			msg, err := sphinx.OpenPayload(p.Payload)
			if err != nil || string(msg) != "for you" || p.Destination != dest {
				t.Errorf("delivered %q to %v (%v)", msg, p.Destination, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("nothing delivered")
		}
		if got := h.metric(t, "nym_mixnode_packets_delivered_total", ""); got != 1 {
			t.Errorf("delivered = %v, want 1", got)
		}
	})
}

func TestRunLeavesNothingRunning(t *testing.T) {
	mix := newNode(t)
	nextKey := newNode(t).key.PublicKey()
	h := startMixer(t, func(c *Config) { c.Workers = 4 })
	h.mustSetKeys(t, RotationKey{Rotation: 0, Key: mix.key})
	for i := range 3 {
		h.Submit(packetTo(t, mix.key, time.Hour, indexAddr(i), nextKey), false)
	}
	waitFor(t, "packets held", func() bool { return h.metric(t, "nym_mixnode_held_packets", "") == 3 })
	if len(mixerGoroutines()) != 5 {
		t.Errorf("%d mixer goroutines running, want 4 workers + 1 delay stage", len(mixerGoroutines()))
	}
	h.shutdown(t)
	if g := mixerGoroutines(); len(g) != 0 {
		t.Fatalf("goroutines left after Run returned:\n%s", strings.Join(g, "\n\n"))
	}
	if err := h.Run(context.Background()); err == nil {
		t.Error("second Run succeeded")
	}
	if h.Submit(packetTo(t, mix.key, 0, indexAddr(9), nextKey), false) {
		t.Error("Submit accepted a packet after Run returned")
	}
}

func TestNewRejects(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("New without Forward succeeded")
	}
	if _, err := New(Config{Workers: -1, Forward: func([32]byte, []byte, bool) {}}); err == nil {
		t.Error("New with negative workers succeeded")
	}
}
