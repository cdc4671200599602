package node

import (
	"testing"
	"time"
)

// Retries after failures double from min to max, each drawn from the upper
// half of its step (jitter), and start over after a success: a node cut
// off from every authority asks about once a minute, not five times a
// second.
func TestBackoffDoublesWithJitterToCap(t *testing.T) {
	b := backoff{min: minRetryWait, max: maxRetryWait}
	step := minRetryWait
	for i := range 20 {
		d := b.next()
		if d < step/2 || d > step {
			t.Fatalf("failure %d: wait %v outside [%v, %v]", i+1, d, step/2, step)
		}
		step = min(2*step, maxRetryWait)
	}
	if step != time.Minute {
		t.Fatalf("cap %v", step)
	}
	b.reset()
	if d := b.next(); d > minRetryWait {
		t.Fatalf("after reset: %v", d)
	}
	// The jitter spreads nodes that failed together.
	seen := map[time.Duration]bool{}
	for range 10 {
		b := backoff{min: minRetryWait, max: maxRetryWait, failures: 12}
		seen[b.next()] = true
	}
	if len(seen) < 2 {
		t.Fatal("no jitter: ten nodes would retry at the same instant")
	}
}
