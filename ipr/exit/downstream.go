package exit

import (
	"context"
	"sync"
	"time"

	"github.com/nym-go/nym/ipr"
)

// downstream sends each session's queued bundles back through its SURBs.
// One pump goroutine per session with data drains NextBundle while replies
// go out; Ready wakes it. A pump stops when the session has no SURB to
// reply with, or its reply failed, and the retry tick starts it again
// later: Ready is edge-triggered and will not fire for a queue that never
// emptied.
//
// A bundle is taken from the router's queue only when a SURB is there to
// carry it. Taken earlier, it would wait for SURBs where the queue's CoDel
// cannot see it, and a download starved of SURBs would build a standing
// delay that nothing drops.
type downstream struct {
	next  func(ipr.SessionKey) ([]byte, bool)
	send  func(ctx context.Context, key ipr.SessionKey, msg []byte) error
	ready func(ipr.SessionKey) bool // a SURB is there for the session
	retry time.Duration

	ctx context.Context
	wg  sync.WaitGroup

	mu      sync.Mutex
	active  map[ipr.SessionKey]bool // pump running; true: woken while running
	stalled map[ipr.SessionKey]struct{}
}

func newDownstream(ctx context.Context, next func(ipr.SessionKey) ([]byte, bool),
	send func(context.Context, ipr.SessionKey, []byte) error, ready func(ipr.SessionKey) bool,
	retry time.Duration) *downstream {
	return &downstream{
		next: next, send: send, ready: ready, retry: retry, ctx: ctx,
		active:  make(map[ipr.SessionKey]bool),
		stalled: make(map[ipr.SessionKey]struct{}),
	}
}

// kick makes sure a pump runs for key. It never blocks: the router calls it
// from its Ready callback.
func (d *downstream) kick(key ipr.SessionKey) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ctx.Err() != nil {
		return
	}
	delete(d.stalled, key)
	if _, running := d.active[key]; running {
		// The pump may have just seen an empty queue; make it look again.
		d.active[key] = true
		return
	}
	d.active[key] = false
	d.wg.Add(1)
	go d.pump(key)
}

func (d *downstream) pump(key ipr.SessionKey) {
	defer d.wg.Done()
	for d.ctx.Err() == nil {
		if !d.ready(key) {
			d.stall(key)
			return
		}
		b, ok := d.next(key)
		if !ok {
			d.mu.Lock()
			if d.active[key] {
				d.active[key] = false
				d.mu.Unlock()
				continue
			}
			delete(d.active, key)
			d.mu.Unlock()
			return
		}
		if err := d.send(d.ctx, key, b); err != nil {
			d.stall(key)
			return
		}
	}
	d.mu.Lock()
	delete(d.active, key)
	d.mu.Unlock()
}

// stall ends key's pump until the retry tick restarts it.
func (d *downstream) stall(key ipr.SessionKey) {
	d.mu.Lock()
	delete(d.active, key)
	d.stalled[key] = struct{}{}
	d.mu.Unlock()
}

// run retries stalled sessions every retry interval until ctx ends, then
// waits for the pumps.
func (d *downstream) run() {
	t := time.NewTicker(d.retry)
	defer t.Stop()
	for {
		select {
		case <-d.ctx.Done():
			d.wg.Wait()
			return
		case <-t.C:
		}
		d.mu.Lock()
		keys := make([]ipr.SessionKey, 0, len(d.stalled))
		for k := range d.stalled {
			keys = append(keys, k)
		}
		d.mu.Unlock()
		for _, k := range keys {
			d.kick(k)
		}
	}
}
