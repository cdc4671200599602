package client

import (
	"context"
	"math"
	"sync/atomic"
	"testing"
	"time"
)

// The intervals of a Poisson process are exponential: mean μ and standard
// deviation μ. A fixed or uniform interval would have a much smaller spread,
// and an observer could tell real packets from cover by timing.
func TestPoissonClockIntervals(t *testing.T) {
	const mean = 20 * time.Millisecond
	const n = 200_000
	start := time.Unix(0, 0)
	p := newPoissonClock(mean, newRandomSource(), start)
	prev := p.next
	var sum, sumSq float64
	var over3 int
	for range n {
		next := p.advance(prev) // served on time
		d := float64(next.Sub(prev)) / float64(mean)
		sum += d
		sumSq += d * d
		if d > 3 {
			over3++
		}
		prev = next
	}
	m := sum / n
	sd := math.Sqrt(sumSq/n - m*m)
	if math.Abs(m-1) > 0.01 {
		t.Errorf("mean interval %.4f×μ, want 1±0.01", m)
	}
	if math.Abs(sd-1) > 0.02 {
		t.Errorf("interval standard deviation %.4f×μ, want 1±0.02 (exponential)", sd)
	}
	// P(X > 3μ) = e^-3 ≈ 0.0498.
	if frac := float64(over3) / n; math.Abs(frac-math.Exp(-3)) > 0.003 {
		t.Errorf("P(interval > 3μ) = %.4f, want %.4f", frac, math.Exp(-3))
	}
}

// Deadlines are absolute: a late tick does not push the schedule back, and a
// process that fell far behind restarts from now instead of bursting.
func TestPoissonClockNoDrift(t *testing.T) {
	const mean = 10 * time.Millisecond
	start := time.Unix(0, 0)
	p := newPoissonClock(mean, newRandomSource(), start)
	// Serve every tick 5 ms late: after 10,000 ticks the schedule is still
	// where the draws put it, about 100 s in, not 150 s.
	for range 10_000 {
		p.advance(p.next.Add(5 * time.Millisecond))
	}
	if got := p.next.Sub(start); got < 95*time.Second || got > 105*time.Second {
		t.Fatalf("after 10,000 late ticks the schedule is at %v, want ≈100 s", got)
	}
	// Stalled for a minute: the next deadline is near now, not a minute of
	// back-to-back ticks behind it.
	now := p.next.Add(time.Minute)
	if next := p.advance(now); next.Before(now) {
		t.Fatalf("after a stall the next deadline is %v behind now", now.Sub(next))
	}
}

// runPoisson keeps its rate even when each tick takes a good part of the
// mean interval. A wall-clock measurement, so named TestTiming*: make test
// runs it apart, without the race detector, with one retry (under -race on
// a busy machine it lost rounds).
func TestTimingRunPoissonRate(t *testing.T) {
	if testing.Short() {
		t.Skip("timing test")
	}
	if raceEnabled {
		t.Skip("timing test: run without -race (make test does)")
	}
	const mean = 2 * time.Millisecond
	const run = 1500 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), run)
	defer cancel()
	var ticks atomic.Int64
	start := time.Now()
	runPoisson(ctx, mean, newRandomSource(), func(time.Time) {
		ticks.Add(1)
		busy := time.Now().Add(mean / 2) // work worth half the mean interval
		for time.Now().Before(busy) {
		}
	})
	elapsed := time.Since(start)
	want := float64(elapsed) / float64(mean)
	got := float64(ticks.Load())
	// Poisson count: sd = √750 ≈ 27, i.e. 3.7%; allow 12% for a loaded machine.
	if math.Abs(got-want)/want > 0.12 {
		t.Fatalf("%v ticks in %v, want %.0f ± 12%%", got, elapsed, want)
	}
}
