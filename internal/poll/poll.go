// Package poll waits in tests for a condition that other goroutines bring
// about, without sleeping for a guessed duration.
package poll

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// Until polls cond every millisecond until it holds, and fails the test if
// it still does not after timeout.
func Until(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(time.Millisecond)
	}
}

// UntilProgress polls cond every millisecond until it holds. Rather than a
// fixed deadline it fails the test only when progress, a count that grows
// as the work towards cond advances, has not changed for stall: a loaded
// machine may take many times as long, and the test still waits for it,
// but a stuck one fails after stall.
func UntilProgress(t testing.TB, stall time.Duration, what string, progress func() uint64, cond func() bool) {
	t.Helper()
	last, since := progress(), time.Now()
	for !cond() {
		if p := progress(); p != last {
			last, since = p, time.Now()
		} else if time.Since(since) > stall {
			t.Fatalf("no progress in %v waiting for %s (progress count %d)", stall, what, last)
		}
		time.Sleep(time.Millisecond)
	}
}

// ErrStalled is the cause of a WithProgress context cancelled for a stall.
var ErrStalled = errors.New("poll: no progress")

// WithProgress returns a context that is cancelled, with cause ErrStalled,
// once progress (a count that grows while the work goes on, such as bytes
// or packets moved) has not changed for stall. It is the deadline of a
// transfer on a busy machine: it extends for as long as the transfer
// advances. cancel releases the watcher; call it when done.
func WithProgress(ctx context.Context, stall time.Duration, progress func() uint64) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(min(stall/10, 100*time.Millisecond))
		defer tick.Stop()
		last, since := progress(), time.Now()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case now := <-tick.C:
				if p := progress(); p != last {
					last, since = p, now
				} else if now.Sub(since) > stall {
					cancel(fmt.Errorf("%w in %v (count %d)", ErrStalled, stall, last))
					return
				}
			}
		}
	})
	var once sync.Once
	return ctx, func() {
		once.Do(func() { close(done) })
		wg.Wait()
		cancel(context.Canceled)
	}
}
