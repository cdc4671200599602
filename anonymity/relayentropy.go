package anonymity

import (
	"cmp"
	"math"
	"slices"
)

// RelayEntropy is the sender entropy of the packets that a relay which
// does not mix sends on, from the observer's events alone: fast mode's
// entry gateway, which takes WireGuard from clients and sends the inner
// tunnels' datagrams on to exits at once.
//
// Fast mode has no mix layer, so Loopix's measure (SenderEntropy, over the
// packets leaving the last mix layer) has nothing to report. Its nearest
// equivalent takes the entry as the last layer, with the model
// SenderEntropy uses for a mix: the relay is a pool, and a packet it sends
// on to another relay is equally likely to be any client's packet inside
// it (arrived, not yet sent on), so it carries the mean of their
// distributions (each a certainty on its client). This is generous to the
// user: a relay with no delay sends packets on in the order they came, in
// sizes that follow theirs (the outer tunnel's overhead less), so an
// observer who uses that names the sender outright; the pool credits the
// relay with every overlap its processing time makes, and the result is an
// upper bound on the sender entropy the relay gives. It is computed from
// the trace's timing, not assumed: a relay that held packets long enough
// to overlap many clients' would score high.
//
// carries says which arrivals could be sent on at all: the observer knows
// the protocol, and sees which messages the relay consumes (WireGuard's
// handshakes and keepalives to the entry carry nothing for the exit).
// Left in the pool, they would never leave, and would blur every later
// departure. nil takes every arrival.
//
// A relay is a gateway that clients send to; its departures to other
// relays are reported (in Bits, in time order), those with its pool empty
// counted in Unattributed. Arrivals from relays (replies) and departures
// to clients are downstream and take no part. Events are sorted by time,
// stably.
func RelayEntropy(events []Event, carries func(Event) bool) EntropyReport {
	ids, index := senders(events)
	n := len(ids)
	rep := EntropyReport{Senders: n}
	if n > 0 {
		rep.Ideal = math.Log2(float64(n))
	}
	ev := slices.Clone(events)
	slices.SortStableFunc(ev, func(a, b Event) int { return cmp.Compare(a.Time, b.Time) })
	type pool struct {
		k    int
		mean []float64
	}
	pools := make(map[NodeID]*pool)
	for _, e := range ev {
		if e.Role != RoleGateway || e.Dir != In || e.PeerRole.relay() {
			continue
		}
		if _, ok := pools[e.Node]; !ok {
			pools[e.Node] = &pool{mean: make([]float64, n)}
		}
	}
	for _, e := range ev {
		p := pools[e.Node]
		if p == nil || e.Role != RoleGateway {
			continue
		}
		switch {
		case e.Dir == In && !e.PeerRole.relay():
			if carries != nil && !carries(e) {
				continue
			}
			k := float64(p.k)
			for i := range p.mean {
				p.mean[i] *= k / (k + 1)
			}
			p.mean[index[e.Peer]] += 1 / (k + 1)
			p.k++
		case e.Dir == Out && e.PeerRole.relay():
			if p.k == 0 {
				rep.Unattributed++
				continue
			}
			h, _ := clientEntropy(p.mean)
			rep.Bits = append(rep.Bits, h)
			if p.k--; p.k == 0 {
				clear(p.mean)
			}
		}
	}
	rep.Mean, rep.P5 = meanP5(rep.Bits)
	return rep
}
