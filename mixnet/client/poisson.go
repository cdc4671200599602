package client

import (
	"context"
	"time"
)

// maxPoissonLag is how far a Poisson stream may fall behind its schedule
// before it gives up catching up. Below it, late ticks fire at once, so the
// long-run rate holds; beyond it (the process was suspended or starved), it
// restarts from now instead of sending a burst that would stand out.
const maxPoissonLag = time.Second

// poissonClock yields the tick times of a Poisson process with the given
// mean interval. Each deadline is the previous deadline plus an exponential
// draw, never "now plus a draw", so the time spent on each tick does not
// lower the rate.
type poissonClock struct {
	mean time.Duration
	rnd  *randomSource
	next time.Time
}

func newPoissonClock(mean time.Duration, rnd *randomSource, now time.Time) *poissonClock {
	p := &poissonClock{mean: mean, rnd: rnd, next: now}
	p.next = now.Add(rnd.exp(mean))
	return p
}

// advance moves to the next deadline after the one just served and returns it.
func (p *poissonClock) advance(now time.Time) time.Time {
	p.next = p.next.Add(p.rnd.exp(p.mean))
	if now.Sub(p.next) > maxPoissonLag {
		p.next = now.Add(p.rnd.exp(p.mean))
	}
	return p.next
}

// runPoisson calls tick at each deadline of a Poisson process until ctx ends.
func runPoisson(ctx context.Context, mean time.Duration, rnd *randomSource, tick func(now time.Time)) {
	clock := newPoissonClock(mean, rnd, time.Now())
	timer := time.NewTimer(time.Until(clock.next))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		now := time.Now()
		// Serve every deadline that has passed: under load one timer
		// firing may stand for several ticks.
		for !clock.next.After(now) {
			tick(now)
			if ctx.Err() != nil {
				return
			}
			now = time.Now()
			clock.advance(now)
		}
		timer.Reset(clock.next.Sub(now))
	}
}
