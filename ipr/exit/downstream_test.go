package exit

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nym-go/nym/ipr"
)

// fakeQueue stands in for the router's per-session downstream queues.
type fakeQueue struct {
	mu     sync.Mutex
	q      map[ipr.SessionKey]int
	sent   map[ipr.SessionKey]int
	fail   int                     // replies to refuse before accepting
	noSURB map[ipr.SessionKey]bool // sessions without a SURB to reply with
}

func (f *fakeQueue) ready(k ipr.SessionKey) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return !f.noSURB[k]
}

func (f *fakeQueue) setSURBs(k ipr.SessionKey, have bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.noSURB == nil {
		f.noSURB = map[ipr.SessionKey]bool{}
	}
	f.noSURB[k] = !have
}

func (f *fakeQueue) next(k ipr.SessionKey) ([]byte, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.q[k] == 0 {
		return nil, false
	}
	f.q[k]--
	return []byte{1}, true
}

func (f *fakeQueue) send(_ context.Context, k ipr.SessionKey, _ []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail > 0 {
		f.fail--
		return errors.New("no SURBs")
	}
	f.sent[k]++
	return nil
}

func (f *fakeQueue) push(k ipr.SessionKey, n int) {
	f.mu.Lock()
	f.q[k] += n
	f.mu.Unlock()
}

func (f *fakeQueue) queued(k ipr.SessionKey) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.q[k]
}

func (f *fakeQueue) sentTo(k ipr.SessionKey) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sent[k]
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestDownstreamDrainsEverySessionAndRetriesStalled(t *testing.T) {
	f := &fakeQueue{q: map[ipr.SessionKey]int{}, sent: map[ipr.SessionKey]int{}, fail: 3}
	ctx, cancel := context.WithCancel(context.Background())
	d := newDownstream(ctx, f.next, f.send, f.ready, time.Millisecond)
	done := make(chan struct{})
	go func() { d.run(); close(done) }()
	defer func() { cancel(); <-done }()

	a, b := ipr.SessionKey{1}, ipr.SessionKey{2}
	f.push(a, 50)
	f.push(b, 50)
	d.kick(a)
	d.kick(b)
	// The first replies fail (no SURBs): those bundles are lost, and the
	// retry tick must bring the pumps back for the rest without a new Ready.
	waitFor(t, "both queues drained", func() bool {
		return f.sentTo(a)+f.sentTo(b) == 100-3 && f.queued(a)+f.queued(b) == 0
	})
}

// Without a SURB a session's bundles stay in the router's queue, where
// CoDel sees how long they wait, and go out once SURBs arrive: none is taken
// only to wait, or to be lost, for want of a SURB.
func TestDownstreamTakesNothingWithoutSURB(t *testing.T) {
	f := &fakeQueue{q: map[ipr.SessionKey]int{}, sent: map[ipr.SessionKey]int{}}
	ctx, cancel := context.WithCancel(context.Background())
	d := newDownstream(ctx, f.next, f.send, f.ready, time.Millisecond)
	done := make(chan struct{})
	go func() { d.run(); close(done) }()
	defer func() { cancel(); <-done }()

	k := ipr.SessionKey{5}
	f.setSURBs(k, false)
	f.push(k, 10)
	d.kick(k)
	time.Sleep(20 * time.Millisecond) // some twenty retry ticks
	if q, s := f.queued(k), f.sentTo(k); q != 10 || s != 0 {
		t.Fatalf("without SURBs: %d queued, %d sent; want all 10 left queued", q, s)
	}
	f.setSURBs(k, true) // SURBs arrive: the retry tick, not a new Ready, resumes
	waitFor(t, "the queue drained", func() bool { return f.sentTo(k) == 10 && f.queued(k) == 0 })
}

func TestDownstreamKickWhilePumpRunsIsNotLost(t *testing.T) {
	f := &fakeQueue{q: map[ipr.SessionKey]int{}, sent: map[ipr.SessionKey]int{}}
	ctx, cancel := context.WithCancel(context.Background())
	// A retry interval far beyond the test: only kicks may start pumps.
	d := newDownstream(ctx, f.next, f.send, f.ready, time.Hour)
	done := make(chan struct{})
	go func() { d.run(); close(done) }()
	defer func() { cancel(); <-done }()

	k := ipr.SessionKey{9}
	total := 0
	for range 2000 {
		f.push(k, 1)
		d.kick(k)
		total++
	}
	waitFor(t, "every bundle sent", func() bool { return f.sentTo(k) == total })
}

func TestDownstreamStopsWithContext(t *testing.T) {
	f := &fakeQueue{q: map[ipr.SessionKey]int{}, sent: map[ipr.SessionKey]int{}}
	ctx, cancel := context.WithCancel(context.Background())
	d := newDownstream(ctx, f.next, f.send, f.ready, time.Millisecond)
	done := make(chan struct{})
	go func() { d.run(); close(done) }()
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	f.push(ipr.SessionKey{3}, 1)
	d.kick(ipr.SessionKey{3}) // must not start a pump after the end
	time.Sleep(10 * time.Millisecond)
	if f.sentTo(ipr.SessionKey{3}) != 0 {
		t.Fatal("a pump ran after the service stopped")
	}
}
