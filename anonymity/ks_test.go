package anonymity

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

func TestKolmogorovQ(t *testing.T) {
	// The tail summed directly (2Σ(−1)^(j−1)exp(−2j²λ²), 2000 terms), on both sides
	// of the switch between series.
	for _, c := range []struct{ l, q float64 }{
		{0.5, 0.963945},
		{1.0, 0.269999},
		{1.1, 0.177718},
		{1.2, 0.112250},
		{1.5, 0.022218},
		{2.0, 0.000671},
	} {
		if q := kolmogorovQ(c.l); math.Abs(q-c.q) > 2e-6 {
			t.Errorf("Q(%v) = %.6f, want %.6f", c.l, q, c.q)
		}
	}
}

func TestKSExact(t *testing.T) {
	a := []float64{1, 2, 3, 4}
	if r := KS(a, a); r.D != 0 || r.P != 1 {
		t.Errorf("identical samples: %+v", r)
	}
	if r := KS([]float64{1, 2, 3}, []float64{4, 5, 6}); r.D != 1 {
		t.Errorf("disjoint samples: D %v, want 1", r.D)
	}
	// Ties: all values equal in both, same distribution.
	if r := KS([]float64{7, 7, 7}, []float64{7, 7}); r.D != 0 {
		t.Errorf("tied samples: D %v, want 0", r.D)
	}
	// F_a - F_b at 2: 2/4 - 0 = 0.5 is the largest distance.
	if r := KS([]float64{1, 2, 3, 4}, []float64{3, 4, 5, 6}); r.D != 0.5 {
		t.Errorf("D %v, want 0.5", r.D)
	}
	if r := KS(nil, a); r.P != 1 || r.D != 0 {
		t.Errorf("empty sample: %+v", r)
	}
}

func TestKSSamples(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	draw := func(n int, rate float64) []float64 {
		s := make([]float64, n)
		for i := range s {
			s[i] = rng.ExpFloat64() / rate
		}
		return s
	}
	if r := KS(draw(2000, 1), draw(2000, 1)); r.P < 0.05 {
		t.Errorf("one distribution: %+v, want p ≥ 0.05", r)
	}
	if r := KS(draw(2000, 1), draw(2000, 1.3)); r.P > 1e-6 {
		t.Errorf("rates 1 and 1.3: %+v, want p < 1e-6", r)
	}
}

// linkTrace: a gateway sees n packets from each of 5 clients in Poisson
// slots (mean 20 ms), each slot real or cover at random. If leaky, a real
// packet is larger and arrives 1 ms after the previous packet instead of
// in a slot.
func linkTrace(rng *rand.Rand, n int, leaky bool) []Record {
	var recs []Record
	for c := NodeID(100); c < 105; c++ {
		var t int64
		for range n {
			cover := rng.IntN(2) == 0
			size := uint32(2048)
			if !leaky || cover {
				t += int64(rng.ExpFloat64() * float64(20*time.Millisecond))
			} else {
				t += int64(time.Millisecond)
				size = 1500
			}
			recs = append(recs, Record{Event{Time: t, Node: gw, Peer: c, Size: size, Role: RoleGateway, Dir: In}, Truth{Sender: c, Cover: cover}})
		}
	}
	return recs
}

func TestCompareCover(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	ct := CompareCover(linkTrace(rng, 400, false), gw, In)
	if ct.Real+ct.Cover != 2000 || ct.Real == 0 || ct.Cover == 0 {
		t.Fatalf("counted %d real, %d cover of 2000", ct.Real, ct.Cover)
	}
	if ct.Sizes.P != 1 || ct.Gaps.P < 0.05 {
		t.Errorf("indistinguishable stream: sizes %+v gaps %+v, want p 1 and ≥ 0.05", ct.Sizes, ct.Gaps)
	}
	ct = CompareCover(linkTrace(rng, 400, true), gw, In)
	if ct.Sizes.P > 1e-6 || ct.Gaps.P > 1e-6 {
		t.Errorf("leaky stream: sizes %+v gaps %+v, want both p < 1e-6", ct.Sizes, ct.Gaps)
	}
	if ct := CompareCover(linkTrace(rng, 10, false), gw, Out); ct.Real+ct.Cover != 0 {
		t.Errorf("other direction selected %d packets", ct.Real+ct.Cover)
	}
}
