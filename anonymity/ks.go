package anonymity

import (
	"math"
	"slices"
	"sort"
)

// KSResult is a two-sample Kolmogorov–Smirnov test.
type KSResult struct {
	N, M int     // sample sizes
	D    float64 // the largest distance between the two empirical CDFs
	// P is the asymptotic p-value of D under "both samples come from one
	// distribution" (Stephens' small-sample correction): small P says
	// they differ. Ties (equal sizes are common) make it conservative.
	P float64
}

// KS runs the two-sample Kolmogorov–Smirnov test on a and b. With an empty
// sample there is nothing to test: D 0, P 1.
func KS(a, b []float64) KSResult {
	r := KSResult{N: len(a), M: len(b), P: 1}
	if len(a) == 0 || len(b) == 0 {
		return r
	}
	x, y := slices.Clone(a), slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	n, m := float64(len(x)), float64(len(y))
	i, j := 0, 0
	for i < len(x) && j < len(y) {
		// Step past every copy of the smaller value in both samples, so
		// ties move both CDFs together.
		v := min(x[i], y[j])
		for i < len(x) && x[i] == v {
			i++
		}
		for j < len(y) && y[j] == v {
			j++
		}
		r.D = max(r.D, math.Abs(float64(i)/n-float64(j)/m))
	}
	ne := math.Sqrt(n * m / (n + m))
	r.P = kolmogorovQ((ne + 0.12 + 0.11/ne) * r.D)
	return r
}

// kolmogorovQ is the Kolmogorov distribution's tail, P(K > λ), by whichever
// of its two series converges fast at λ.
func kolmogorovQ(l float64) float64 {
	switch {
	case l <= 0:
		return 1
	case l < 1.18:
		// 1 − √(2π)/λ · Σ exp(−(2j−1)²π²/(8λ²))
		var s float64
		for j := 1; j <= 20; j++ {
			k := float64(2*j - 1)
			s += math.Exp(-k * k * math.Pi * math.Pi / (8 * l * l))
		}
		return min(max(1-math.Sqrt(2*math.Pi)/l*s, 0), 1)
	default:
		// 2 Σ (−1)^(j−1) exp(−2j²λ²)
		var s float64
		sign := 1.0
		for j := 1; j <= 100; j++ {
			t := math.Exp(-2 * float64(j*j) * l * l)
			s += sign * t
			if t < 1e-16 {
				break
			}
			sign = -sign
		}
		return min(max(2*s, 0), 1)
	}
}

// CoverTest compares real and cover packets seen at one node in one
// direction, by size and by the gap before each packet on its link.
type CoverTest struct {
	Real, Cover int // packets of each kind
	Sizes, Gaps KSResult
}

// CompareCover tests whether an observer at node (for example a gateway's
// side of its clients' links) could tell real packets from cover. The
// labels come from the ground truth: this is the evaluator checking that
// the observer's view is the same for both, expected so when real packets
// take the slots of one Poisson stream. The gap before a packet is the time
// since the previous packet, of either kind, on the same link: a client
// that sends real packets at once instead of in its next slot shows up as
// short gaps before real packets.
func CompareCover(records []Record, node NodeID, dir Dir) CoverTest {
	var sel []Record
	for _, r := range records {
		if r.Node == node && r.Dir == dir {
			sel = append(sel, r)
		}
	}
	sort.SliceStable(sel, func(i, j int) bool { return sel[i].Time < sel[j].Time })
	last := make(map[NodeID]int64)
	var sizes, gaps [2][]float64 // [0] real, [1] cover
	var ct CoverTest
	for _, r := range sel {
		k := 0
		if r.Truth.Cover {
			k = 1
			ct.Cover++
		} else {
			ct.Real++
		}
		sizes[k] = append(sizes[k], float64(r.Size))
		if t, ok := last[r.Peer]; ok {
			gaps[k] = append(gaps[k], float64(r.Time-t))
		}
		last[r.Peer] = r.Time
	}
	ct.Sizes = KS(sizes[0], sizes[1])
	ct.Gaps = KS(gaps[0], gaps[1])
	return ct
}
