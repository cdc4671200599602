// Package poll waits in tests for a condition that other goroutines bring
// about, without sleeping for a guessed duration.
package poll

import (
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
