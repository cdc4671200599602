package anonymity

import (
	"math"
	"math/rand/v2"
	"testing"
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

func TestCompareCover(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, c := range []struct {
		mode coverMode
		leak bool
	}{
		{slots, false},
		{leaky, true},
	} {
		ct := CompareCover(coverTrace(rng, 10, 60, c.mode), gw, In, 0)
		t.Logf("mode %d: %d real, %d cover; sizes D %.3f p %.3g; gaps D %.3f p %.3g",
			c.mode, ct.Real, ct.Cover, ct.Sizes.D, ct.Sizes.P, ct.Gaps.D, ct.Gaps.P)
		if ct.Real == 0 || ct.Cover == 0 || ct.Gaps.N == 0 || ct.Gaps.M == 0 {
			t.Fatalf("mode %d: nothing to compare: %+v", c.mode, ct)
		}
		if !c.leak && (ct.Sizes.P != 1 || ct.Gaps.P < 0.05) {
			t.Errorf("Poisson slots: sizes %+v gaps %+v, want p 1 and ≥ 0.05", ct.Sizes, ct.Gaps)
		}
		if c.leak && (ct.Sizes.P > 1e-6 || ct.Gaps.P > 1e-6) {
			t.Errorf("leaky client: sizes %+v gaps %+v, want both p < 1e-6", ct.Sizes, ct.Gaps)
		}
	}
	if ct := CompareCover(coverTrace(rng, 2, 5, slots), gw, Out, 0); ct.Real+ct.Cover != 0 {
		t.Errorf("other direction selected %d packets", ct.Real+ct.Cover)
	}
}

func TestFloorDiv(t *testing.T) {
	for _, c := range [][3]int64{{7, 2, 3}, {-7, 2, -4}, {-8, 2, -4}, {0, 5, 0}} {
		if got := floorDiv(c[0], c[1]); got != c[2] {
			t.Errorf("floorDiv(%d, %d) = %d, want %d", c[0], c[1], got, c[2])
		}
	}
}
