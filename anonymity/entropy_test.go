package anonymity

import (
	"math"
	"testing"
)

// traceBuilder writes hand-made traces: each event one nanosecond after the
// last.
type traceBuilder struct {
	t  int64
	ev []Event
}

func (b *traceBuilder) add(node NodeID, role Role, dir Dir, peer NodeID) {
	b.t++
	b.ev = append(b.ev, Event{Time: b.t, Node: node, Peer: peer, Size: 2048, Role: role, Dir: dir})
}

// Node ids for the hand-made traces.
const (
	cA, cB, cC NodeID = 1, 2, 3
	gw, gw2    NodeID = 10, 11
	m1, m2, m3 NodeID = 20, 21, 22
)

// send: a client's packet into gateway gw and on to mix m.
func (b *traceBuilder) send(c, m NodeID) {
	b.add(gw, RoleGateway, In, c)
	b.add(gw, RoleGateway, Out, m)
	b.add(m, RoleMix, In, gw)
}

// hop: mix a sends to mix z, which receives.
func (b *traceBuilder) hop(a, z NodeID) {
	b.add(a, RoleMix, Out, z)
	b.add(z, RoleMix, In, a)
}

// exit: mix m sends a packet out of the last layer, to gateway gw2.
func (b *traceBuilder) exit(m NodeID) {
	b.add(m, RoleMix, Out, gw2)
	b.add(gw2, RoleGateway, In, m)
}

func checkBits(t *testing.T, rep EntropyReport, want ...float64) {
	t.Helper()
	if len(rep.Bits) != len(want) {
		t.Fatalf("%d packets reported (%v), want %d", len(rep.Bits), rep.Bits, len(want))
	}
	for i := range want {
		if math.Abs(rep.Bits[i]-want[i]) > 1e-9 {
			t.Errorf("packet %d: %.6f bits, want %.6f (all %v)", i, rep.Bits[i], want[i], rep.Bits)
		}
	}
}

func TestEntropyOneMixTwoSenders(t *testing.T) {
	var b traceBuilder
	b.send(cA, m1)
	b.send(cB, m1)
	b.exit(m1)
	b.exit(m1)
	rep := SenderEntropy(b.ev)
	checkBits(t, rep, 1, 1)
	if rep.Senders != 2 || rep.Ideal != 1 || rep.Mean != 1 || rep.P5 != 1 {
		t.Errorf("report %+v", rep)
	}
}

// TestEntropyChain: a and b mix in m1; one of theirs joins c's packet in m2
// and leaves: ½ c, ¼ a, ¼ b, 1.5 bits.
func TestEntropyChain(t *testing.T) {
	var b traceBuilder
	b.send(cA, m1)
	b.send(cB, m1)
	b.send(cC, m2)
	b.hop(m1, m2)
	b.exit(m2)
	checkBits(t, SenderEntropy(b.ev), 1.5)
}

// TestEntropyOneAtATime: a mix that never holds two packets hides nothing.
func TestEntropyOneAtATime(t *testing.T) {
	var b traceBuilder
	for _, c := range []NodeID{cA, cB, cC, cA} {
		b.send(c, m1)
		b.hop(m1, m2)
		b.hop(m2, m3)
		b.exit(m3)
	}
	rep := SenderEntropy(b.ev)
	checkBits(t, rep, 0, 0, 0, 0)
	if rep.Ideal != math.Log2(3) {
		t.Errorf("ideal %v, want log2 3", rep.Ideal)
	}
}

// TestEntropyReleasedTogether: N senders into one pool, all released: every
// packet is log2 N bits, the ideal.
func TestEntropyReleasedTogether(t *testing.T) {
	const n = 8
	var b traceBuilder
	for c := NodeID(100); c < 100+n; c++ {
		b.send(c, m1)
	}
	for range n {
		b.hop(m1, m2) // then a chain of one-at-a-time hops keeps it
		b.hop(m2, m3)
		b.exit(m3)
	}
	rep := SenderEntropy(b.ev)
	want := make([]float64, n)
	for i := range want {
		want[i] = 3
	}
	checkBits(t, rep, want...)
	if rep.Ideal != 3 || rep.P5 != 3 {
		t.Errorf("report %+v", rep)
	}
}

// TestEntropyLinksFIFO: distributions follow their own link, in order. m1
// sends m3 first a certain packet (only a inside), then an even one of b
// and c; m2 sends m3 a certain packet in between. m3 holds one at a time,
// so it reports 0, 0, 1. Matching across links, or last-in-first-out,
// would not.
func TestEntropyLinksFIFO(t *testing.T) {
	var b traceBuilder
	b.send(cA, m1)
	b.add(m1, RoleMix, Out, m3) // P1: certain a
	b.send(cB, m1)
	b.send(cC, m1)
	b.add(m1, RoleMix, Out, m3) // P2: ½ b, ½ c
	b.send(cA, m2)
	b.add(m2, RoleMix, Out, m3) // P3: certain a
	b.add(m3, RoleMix, In, m2)  // P3
	b.exit(m3)
	b.add(m3, RoleMix, In, m1) // P1
	b.exit(m3)
	b.add(m3, RoleMix, In, m1) // P2
	b.exit(m3)
	rep := SenderEntropy(b.ev)
	checkBits(t, rep, 0, 0, 1)
	if rep.Unmatched != 0 {
		t.Errorf("%d unmatched", rep.Unmatched)
	}
}

// TestEntropyCoverAndGaps: a mix sending while empty is its own cover (not
// reported, counted); its mass dilutes nothing of the clients' once
// renormalised; an arrival with no departure on its link is counted.
func TestEntropyCoverAndGaps(t *testing.T) {
	var b traceBuilder
	b.exit(m1) // empty mix: cover
	b.send(cA, m1)
	b.add(m1, RoleMix, In, m2) // nothing left m2: unmatched, no client
	b.send(cB, m1)
	b.exit(m1) // ⅓ a, ⅓ b, ⅓ none → 1 bit over clients
	rep := SenderEntropy(b.ev)
	checkBits(t, rep, 1)
	if rep.Unattributed != 1 || rep.Unmatched != 1 {
		t.Errorf("unattributed %d unmatched %d, want 1 and 1", rep.Unattributed, rep.Unmatched)
	}
}

func TestMeanP5(t *testing.T) {
	xs := make([]float64, 40)
	for i := range xs {
		xs[i] = float64(39 - i)
	}
	mean, p5 := meanP5(xs)
	if mean != 19.5 || p5 != 1 { // rank ceil(0.05·40) = 2 → the second smallest
		t.Errorf("mean %v p5 %v, want 19.5 and 1", mean, p5)
	}
}
