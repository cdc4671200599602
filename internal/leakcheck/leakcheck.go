// Package leakcheck fails a test that leaves goroutines running: every
// goroutine in this project has an owner that must stop it.
package leakcheck

import (
	"runtime"
	"testing"
	"time"
)

// Check records the goroutines alive now and, after all later cleanups have
// run, fails the test if more are still alive five seconds on. Call it first
// in a test (its cleanup then runs last). Tests using it must not run in
// parallel.
func Check(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Fatalf("goroutine leak: %d before, %d after\n%s", before, runtime.NumGoroutine(), buf)
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
}
