package anonymity

import (
	"cmp"
	"math"
	"slices"
)

// EntropyReport is the sender anonymity of the packets leaving the last mix
// layer, as Loopix defines it: the Shannon entropy of the observer's
// probability distribution over the clients that could have sent each one.
type EntropyReport struct {
	Senders int       // N: senders seen sending into a gateway (clients, and exits sending replies)
	Bits    []float64 // entropy of each packet leaving the last mix layer, in time order
	Mean    float64   // mean of Bits
	P5      float64   // 5th percentile of Bits (nearest rank): the worst-off packets
	Ideal   float64   // log2(N), a perfect mix of all senders

	// Unattributed counts packets leaving the last layer with no client
	// behind them (a mix sent while empty: its own cover). They are not in
	// Bits.
	Unattributed int
	// Unmatched counts arrivals at a mix with no departure to match on
	// their link (the trace began mid-flight or lost records) or from
	// outside the mixnet. They count as packets of no client.
	Unmatched int
}

// SenderEntropy computes sender entropy from the observer's events alone.
//
// The model, from Loopix: a mix with exponential (memoryless) delays is a
// pool, and whichever packet leaves next is equally likely to be any packet
// inside. So the pool keeps one distribution over senders, the mean of its
// packets' distributions, and a count k. An arrival with distribution d makes
// it (k·pool + d)/(k+1) and k+1; a departure carries the pool's distribution
// and leaves the mean unchanged, k−1. Links are FIFO: the k-th packet out of
// A to B is the k-th into B from A, which carries a distribution hop to hop.
// A gateway does not delay: the k-th packet it sends on to a relay is the
// k-th it got from a sender, distribution unchanged (an assumption: a
// gateway that reordered would have to be modelled as a mix). A packet from a client
// starts as certainty on that client.
//
// Packets of no client (a mix's own cover, unmatched arrivals) take part in
// the pools as mass on "no client"; a reported packet's entropy is over the
// clients given that it came from one. Events are sorted by time, stably, so
// equal times keep their order.
func SenderEntropy(events []Event) EntropyReport {
	rep, _, _ := senderDists(events, false)
	return rep
}

// senderDists is SenderEntropy; with keep it also returns the senders'
// ids and, for each packet in rep.Bits, its distribution over them, summing
// to 1 (for checking the model against the ground truth).
func senderDists(events []Event, keep bool) (rep EntropyReport, ids []NodeID, dists [][]float64) {
	ids, index := senders(events)
	n := len(ids)
	none := n // the slot for "no client"
	point := func(i int) []float64 { d := make([]float64, n+1); d[i] = 1; return d }

	ev := slices.Clone(events)
	slices.SortStableFunc(ev, func(a, b Event) int { return cmp.Compare(a.Time, b.Time) })

	type link struct{ from, to NodeID }
	type pool struct {
		k    int
		mean []float64
	}
	links := make(map[link][][]float64)     // FIFO of distributions in flight
	ingress := make(map[NodeID][][]float64) // per gateway: from clients, not yet sent on
	pools := make(map[NodeID]*pool)
	rep.Senders = n
	pop := func(q [][]float64) ([]float64, [][]float64, bool) {
		if len(q) == 0 {
			return nil, q, false
		}
		return q[0], q[1:], true
	}

	for _, e := range ev {
		if !e.Role.relay() {
			continue // clients' and the exit's internet side: not mixnet hops
		}
		var d []float64
		switch e.Dir {
		case In:
			switch {
			case e.Role == RoleGateway && e.PeerRole.relay():
				continue // from the last layer: delivery, past what is measured
			case e.Role == RoleGateway:
				ingress[e.Node] = append(ingress[e.Node], point(index[e.Peer]))
				continue
			case !e.PeerRole.relay():
				rep.Unmatched++ // into a mix from outside the mixnet: no client's
				d = point(none)
			default:
				var ok bool
				l := link{e.Peer, e.Node}
				if d, links[l], ok = pop(links[l]); !ok {
					rep.Unmatched++
					d = point(none)
				}
			}
			if e.Role == RoleMix {
				p := pools[e.Node]
				if p == nil {
					p = &pool{mean: make([]float64, n+1)}
					pools[e.Node] = p
				}
				k := float64(p.k)
				for i := range p.mean {
					p.mean[i] = (k*p.mean[i] + d[i]) / (k + 1)
				}
				p.k++
			}
			continue
		case Out:
			switch e.Role {
			case RoleGateway:
				if !e.PeerRole.relay() {
					continue // delivery to a client
				}
				var ok bool
				if d, ingress[e.Node], ok = pop(ingress[e.Node]); !ok {
					d = point(none) // the gateway's own packet
				}
			case RoleMix:
				p := pools[e.Node]
				if p == nil || p.k == 0 {
					d = point(none)
				} else {
					d = slices.Clone(p.mean)
					if p.k--; p.k == 0 {
						clear(p.mean)
					}
				}
			}
		}
		if e.PeerRole.relay() && !(e.Role == RoleMix && e.PeerRole != RoleMix) {
			l := link{e.Node, e.Peer}
			links[l] = append(links[l], d)
			continue
		}
		if e.Role != RoleMix {
			continue
		}
		// Leaving the last mix layer.
		if h, ok := clientEntropy(d[:n]); ok {
			rep.Bits = append(rep.Bits, h)
			if keep {
				p := slices.Clone(d[:n])
				var sum float64
				for _, x := range p {
					sum += x
				}
				for i := range p {
					p[i] /= sum
				}
				dists = append(dists, p)
			}
		} else {
			rep.Unattributed++
		}
	}
	if n > 0 {
		rep.Ideal = math.Log2(float64(n))
	}
	rep.Mean, rep.P5 = meanP5(rep.Bits)
	return rep, ids, dists
}

// senders are the non-relays that send into a gateway (clients, and exits
// sending replies), numbered in order of their ids so that a result does
// not depend on map order.
func senders(events []Event) (ids []NodeID, index map[NodeID]int) {
	index = make(map[NodeID]int)
	for _, e := range events {
		if e.Dir == In && e.Role == RoleGateway && !e.PeerRole.relay() {
			if _, ok := index[e.Peer]; !ok {
				index[e.Peer] = 0
				ids = append(ids, e.Peer)
			}
		}
	}
	slices.Sort(ids)
	for i, id := range ids {
		index[id] = i
	}
	return ids, index
}

// clientEntropy is the Shannon entropy in bits of p renormalised to sum 1;
// false if p carries no mass.
func clientEntropy(p []float64) (float64, bool) {
	var sum float64
	for _, x := range p {
		sum += x
	}
	if sum <= 1e-12 {
		return 0, false
	}
	var h float64
	for _, x := range p {
		if q := x / sum; q > 0 {
			h -= q * math.Log2(q)
		}
	}
	return max(h, 0), true // rounding can give -0 or a hair below 0
}

// meanP5 returns the mean and the nearest-rank 5th percentile of xs.
func meanP5(xs []float64) (mean, p5 float64) {
	if len(xs) == 0 {
		return 0, 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	for _, x := range s {
		mean += x
	}
	mean /= float64(len(s))
	rank := int(math.Ceil(0.05*float64(len(s)))) - 1
	return mean, s[max(rank, 0)]
}
