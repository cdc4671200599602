package mixnode

import (
	"crypto/rand"
	"math"
	mrand "math/rand/v2"
	"slices"
	"testing"
	"time"
)

// TestDelayDistribution sends packets with exponential delays through the
// mixer at a steady rate well below its capacity and checks what a Loopix
// mix promises: each packet is held for the delay its sender chose, so the
// holding times follow the sender's exponential distribution, the order is
// shuffled, and little time is added on top.
func TestDelayDistribution(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("timing measurement: skipped under -short and -race")
	}
	const (
		n        = 3000
		mean     = 5 * time.Millisecond
		interval = 500 * time.Microsecond // 2000 packets/s, ~10–20% of a 2-core node
	)
	var seed [32]byte
	if _, err := rand.Read(seed[:]); err != nil {
		t.Fatal(err)
	}
	rng := mrand.New(mrand.NewChaCha8(seed))

	mix := newNode(t)
	nextKey := newNode(t).key.PublicKey()
	delays := make([]time.Duration, n)
	pkts := make([][]byte, n)
	for i := range delays {
		delays[i] = time.Duration(rng.ExpFloat64() * float64(mean))
	}
	buildParallel(n, func(i int) { pkts[i] = packetTo(t, mix.key, delays[i], indexAddr(i), nextKey) })

	h := startMixer(t, nil)
	h.mustSetKeys(t, RotationKey{Rotation: 0, Key: mix.key})

	// Pace submissions by absolute schedule so a late wake-up does not
	// slow the whole run down.
	submitted := make([]time.Time, n)
	start := time.Now()
	for i, p := range pkts {
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			time.Sleep(wait)
		}
		submitted[i] = time.Now()
		if !h.Submit(p, false) {
			t.Fatalf("packet %d refused", i)
		}
	}

	held := make([]time.Duration, n)
	added := make([]time.Duration, n)
	order := make([]int, 0, n)
	for range n {
		f := h.next(t)
		i := addrIndex(f.next)
		order = append(order, i)
		held[i] = f.at.Sub(submitted[i])
		added[i] = held[i] - delays[i]
	}

	// Fit: the maximum-likelihood mean of an exponential is the sample mean.
	var sum time.Duration
	for _, d := range held {
		sum += d
	}
	fitted := sum / n
	ks := ksExponential(held, mean)
	slices.Sort(added)
	medianAdded, p99Added := added[n/2], added[n*99/100]
	inOrder := 0
	for i, idx := range order {
		if i == idx {
			inOrder++
		}
	}
	t.Logf("%d packets, mean delay %v: fitted mean holding time %v (%+.1f%%), KS distance to Exp(%v) %.4f",
		n, mean, fitted, 100*(float64(fitted)/float64(mean)-1), mean, ks)
	t.Logf("added latency (held − requested): median %v, p99 %v, min %v; %d of %d packets left in their arrival position",
		medianAdded, p99Added, added[0], inOrder, n)

	if math.Abs(float64(fitted)/float64(mean)-1) > 0.10 {
		t.Errorf("mean holding time %v, want %v ± 10%%", fitted, mean)
	}
	// The 1% critical value for n = 3000 is 1.63/√n ≈ 0.030; allow for the
	// added latency shifting the curve a little.
	if ks > 0.06 {
		t.Errorf("KS distance %.4f: holding times are not Exp(%v)", ks, mean)
	}
	if slices.IsSorted(order) {
		t.Error("packets left in arrival order: no mixing")
	}
	if added[0] < 0 {
		t.Errorf("a packet left %v before its delay was up", -added[0])
	}
	if medianAdded > 500*time.Microsecond {
		t.Errorf("median added latency %v, target < 0.5 ms", medianAdded)
	}
}

// ksExponential is the Kolmogorov–Smirnov distance between the empirical CDF
// of samples and the CDF of an exponential distribution with the given mean.
func ksExponential(samples []time.Duration, mean time.Duration) float64 {
	s := slices.Clone(samples)
	slices.Sort(s)
	n := float64(len(s))
	var worst float64
	for i, x := range s {
		cdf := 1 - math.Exp(-float64(x)/float64(mean))
		worst = max(worst, math.Abs(cdf-float64(i)/n), math.Abs(float64(i+1)/n-cdf))
	}
	return worst
}
