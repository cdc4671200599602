package anonymity

import (
	"cmp"
	"math"
	"slices"
	"time"
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

// CoverTest compares what an observer sees of real and of cover traffic on
// the links at one node, in one direction.
type CoverTest struct {
	Real, Cover int // packets of each kind
	// Sizes compares the sizes of real packets with those of cover.
	Sizes KSResult
	// Gaps compares the gaps between packets on a link in windows where
	// its client had real traffic with those in windows where it had none.
	Gaps KSResult
}

// CompareCover tests whether an observer at node (for example a gateway's
// side of its clients' links) could tell real traffic from cover. The
// labels come from the ground truth: this is the evaluator checking that
// the observer's view is the same for both.
//
// Sizes are compared packet by packet. Timing is compared by activity, not
// by label: the gap before a real packet is longer than before a cover one
// even in a perfect Loopix stream (a longer wait between Poisson slots
// makes it likelier that a real packet is queued for the slot), yet the
// observer, who sees only the slots, learns nothing from that. What must
// not change is the stream itself when the user is active: so each gap
// between consecutive packets of a link is filed under its ending window
// (of width window, 0 meaning 1 s) as active if the link carried any real
// packet in that window, idle if not, and the two sets are compared. A
// client that sends real packets at once instead of in slots shows up as
// short gaps in active windows; a push that raises the rate, likewise.
func CompareCover(records []Record, node NodeID, dir Dir, window time.Duration) CoverTest {
	if window <= 0 {
		window = time.Second
	}
	w := int64(window)
	var sel []Record
	for _, r := range records {
		if r.Node == node && r.Dir == dir {
			sel = append(sel, r)
		}
	}
	slices.SortStableFunc(sel, func(a, b Record) int { return cmp.Compare(a.Time, b.Time) })
	type slot struct {
		link NodeID
		win  int64
	}
	active := make(map[slot]bool)
	var sizes [2][]float64 // [0] real, [1] cover
	var ct CoverTest
	for _, r := range sel {
		if r.Truth.Cover {
			ct.Cover++
			sizes[1] = append(sizes[1], float64(r.Size))
		} else {
			ct.Real++
			sizes[0] = append(sizes[0], float64(r.Size))
			active[slot{r.Peer, floorDiv(r.Time, w)}] = true
		}
	}
	last := make(map[NodeID]int64)
	var gaps [2][]float64 // [0] active, [1] idle
	for _, r := range sel {
		if t, ok := last[r.Peer]; ok {
			k := 1
			if active[slot{r.Peer, floorDiv(r.Time, w)}] {
				k = 0
			}
			gaps[k] = append(gaps[k], float64(r.Time-t))
		}
		last[r.Peer] = r.Time
	}
	ct.Sizes = KS(sizes[0], sizes[1])
	ct.Gaps = KS(gaps[0], gaps[1])
	return ct
}

// floorDiv is a/b rounded down, for windows of negative times too.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}
