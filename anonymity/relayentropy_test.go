package anonymity

import (
	"math"
	"testing"
)

// A hand-made relay trace whose answer is known: clients 1 and 2 send
// into gateway 10, which sends on to gateway 20. Alone in the relay, a
// packet's sender is certain (0 bits); two in it at once, from two
// clients, give 1 bit to each that leaves while both were in. Client 2's
// keepalive (32 bytes), which the relay consumes, stays out of the pool
// when carries says so, and blurs everything when it does not.
func TestRelayEntropyHand(t *testing.T) {
	const gw, exit = 10, 20
	ev := func(tm int64, node, peer NodeID, role, peerRole Role, dir Dir, size uint32) Event {
		return Event{Time: tm, Node: node, Peer: peer, Size: size, Role: role, PeerRole: peerRole, Dir: dir}
	}
	in := func(tm int64, c NodeID, size uint32) Event {
		return ev(tm, gw, c, RoleGateway, RoleClient, In, size)
	}
	out := func(tm int64) Event { return ev(tm, gw, exit, RoleGateway, RoleGateway, Out, 200) }
	events := []Event{
		in(0, 2, 32), // keepalive
		in(1, 1, 200), out(2),
		in(3, 1, 200), in(4, 2, 200), out(5), out(6),
		out(7), // nothing inside: the relay's own
		// Downstream: not part of it.
		ev(8, gw, exit, RoleGateway, RoleGateway, In, 200), ev(9, gw, 1, RoleGateway, RoleClient, Out, 232),
		// The exit's side: no clients send to it, so it is no relay here.
		ev(3, exit, gw, RoleGateway, RoleGateway, In, 200), ev(9, exit, gw, RoleGateway, RoleGateway, Out, 200),
	}
	data := func(e Event) bool { return e.Size > 32 }
	rep := RelayEntropy(events, data)
	want := []float64{0, 1, 1}
	if rep.Senders != 2 || rep.Ideal != 1 || rep.Unattributed != 1 || len(rep.Bits) != len(want) {
		t.Fatalf("report %+v, want 2 senders, bits %v, 1 unattributed", rep, want)
	}
	for i, w := range want {
		if math.Abs(rep.Bits[i]-w) > 1e-9 {
			t.Errorf("packet %d: %.3f bits, want %v", i, rep.Bits[i], w)
		}
	}
	if math.Abs(rep.Mean-2.0/3) > 1e-9 || rep.P5 != 0 {
		t.Errorf("mean %.3f, p5 %.3f; want 0.667, 0", rep.Mean, rep.P5)
	}
	// Every arrival in the pool: the keepalive never leaves, so the first
	// packet out is credited with a second possible sender.
	all := RelayEntropy(events, nil)
	if all.Bits[0] != 1 || all.Unattributed != 0 {
		t.Errorf("with the keepalive in the pool: bits %v, %d unattributed; want the first at 1 bit, none unattributed", all.Bits, all.Unattributed)
	}
}
