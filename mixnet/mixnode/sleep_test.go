package mixnode

import (
	"testing"
	"time"
)

func sleepers(t *testing.T) map[string]sleeper {
	all := map[string]sleeper{"timer": newTimerSleeper()}
	if s, err := newPreciseSleeper(); err == nil {
		all["precise"] = s
	} else {
		t.Logf("no precise sleeper: %v", err)
	}
	return all
}

func TestSleeper(t *testing.T) {
	for name, s := range sleepers(t) {
		t.Run(name, func(t *testing.T) {
			defer s.close()

			// A wake before sleep is kept: sleep returns at once even
			// with no deadline.
			s.wake()
			s.wake()
			done := make(chan struct{})
			go func() { s.sleep(-1); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("pending wake-up lost")
			}

			// The two wakes above count as one: the next sleep waits
			// for its deadline.
			start := time.Now()
			s.sleep(20 * time.Millisecond)
			if slept := time.Since(start); slept < 20*time.Millisecond {
				t.Errorf("slept %v, want 20 ms", slept)
			}

			// A wake ends a sleep with no deadline.
			done = make(chan struct{})
			go func() { s.sleep(-1); close(done) }()
			time.Sleep(10 * time.Millisecond) // let it fall asleep; the test passes either way
			s.wake()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("wake did not end the sleep")
			}
		})
	}
}
