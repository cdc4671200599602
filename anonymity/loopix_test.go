package anonymity

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// loopixTrace simulates what an observer of a small Loopix network sees: n
// clients each send perClient packets in a Poisson stream (mean 20 ms, Nym's
// SendInterval) through gateway gw and three layers of two mixes, each mix
// holding a packet an exponential delay of mean hopDelay; links take 1 µs.
// It is input for the analysis, not a model of the nodes' code: the nodes'
// own traces come with the node option.
func loopixTrace(rng *rand.Rand, n, perClient int, hopDelay time.Duration) []Record {
	const link = int64(time.Microsecond)
	layers := [3][2]NodeID{{20, 21}, {30, 31}, {40, 41}}
	var recs []Record
	var client NodeID
	var packet uint64
	add := func(t int64, node NodeID, role Role, dir Dir, peer NodeID) {
		recs = append(recs, Record{Event{Time: t, Node: node, Peer: peer, Size: 2048, Role: role, Dir: dir}, Truth{Packet: packet, Sender: client}})
	}
	for c := range n {
		client = NodeID(100 + c)
		var t int64
		for range perClient {
			packet++
			t += int64(rng.ExpFloat64() * float64(20*time.Millisecond))
			add(t, gw, RoleGateway, In, client)
			prev, at := gw, t+1
			for _, layer := range layers {
				m := layer[rng.IntN(2)]
				add(at, prev, roleOf(prev), Out, m)
				at += link
				add(at, m, RoleMix, In, prev)
				at += 1 + int64(rng.ExpFloat64()*float64(hopDelay))
				prev = m
			}
			add(at, prev, RoleMix, Out, gw2)
			add(at+link, gw2, RoleGateway, In, prev)
		}
	}
	return recs
}

func roleOf(n NodeID) Role {
	if n == gw || n == gw2 {
		return RoleGateway
	}
	return RoleMix
}

// TestEntropyLoopixSimulation: with Nym's mean hop delay the mixes' pools
// hold several packets and the entropy nears log2 N; with (almost) no delay
// each mix holds one packet at a time and hides nothing. And the
// distributions are calibrated against the ground truth (a pool update that
// forgets its count fails this). Its figures are logged.
func TestEntropyLoopixSimulation(t *testing.T) {
	const n = 10
	for _, c := range []struct {
		delay  time.Duration
		lo, hi float64 // bounds on the mean, in bits
	}{
		{15 * time.Millisecond, 0.8 * math.Log2(n), math.Log2(n)},
		{time.Microsecond, 0, 0.2},
	} {
		t.Run(fmt.Sprint(c.delay), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(9, uint64(c.delay)))
			recs := loopixTrace(rng, n, 200, c.delay)
			rep, ids, dists := senderDists(Events(recs), true)
			t.Logf("hop delay %v: %d packets, mean %.3f bits, p5 %.3f, ideal %.3f, unattributed %d, unmatched %d",
				c.delay, len(rep.Bits), rep.Mean, rep.P5, rep.Ideal, rep.Unattributed, rep.Unmatched)
			if len(rep.Bits) != n*200 || rep.Unattributed != 0 || rep.Unmatched != 0 {
				t.Fatalf("%d packets, %d unattributed, %d unmatched: the trace should link every hop", len(rep.Bits), rep.Unattributed, rep.Unmatched)
			}
			if rep.Mean < c.lo || rep.Mean > c.hi {
				t.Errorf("mean %.3f bits, want in [%.3f, %.3f]", rep.Mean, c.lo, c.hi)
			}

			// Calibration against the ground truth: if the observer's
			// distributions are right, the probability they give the true
			// sender averages what they expect it to, Σ p².
			slices.SortStableFunc(recs, func(a, b Record) int { return cmp.Compare(a.Time, b.Time) })
			var truth []NodeID
			for _, r := range recs {
				if r.Role == RoleMix && r.Dir == Out && r.Peer == gw2 {
					truth = append(truth, r.Truth.Sender)
				}
			}
			var got, want float64
			for i, d := range dists {
				for j, p := range d {
					want += p * p
					if ids[j] == truth[i] {
						got += p
					}
				}
			}
			got, want = got/float64(len(dists)), want/float64(len(dists))
			t.Logf("true sender's probability: mean %.4f, expected %.4f", got, want)
			if math.Abs(got-want) > 0.1*want {
				t.Errorf("true sender's mean probability %.4f, the model expects %.4f", got, want)
			}
		})
	}
}

func BenchmarkSenderEntropy(b *testing.B) {
	ev := Events(loopixTrace(rand.New(rand.NewPCG(1, 1)), 10, 1000, 15*time.Millisecond))
	b.ReportAllocs()
	for b.Loop() {
		SenderEntropy(ev)
	}
	b.ReportMetric(float64(len(ev))*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
