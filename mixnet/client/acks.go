package client

import (
	"container/heap"
	"context"
	"sync"
	"time"

	"github.com/nym-go/nym/mixnet/sphinx"
)

// ackTracker holds the fragments sent and not yet acknowledged, and sends
// them again when their ack is late. A fragment stays known by its ack ID
// while it waits to be resent, so an ack that arrives late still counts and
// the resend is skipped.
type ackTracker struct {
	mu      sync.Mutex
	pending map[[sphinx.IDSize]byte]*pendingAck
	timers  ackHeap
	wake    chan struct{}
}

type pendingAck struct {
	j     *job
	mixes packetMixes
	gen   uint64 // which timer is current; older heap entries are ignored
	timed bool   // a timer is running; false while queued for resending
}

type ackTimer struct {
	at  time.Time
	id  [sphinx.IDSize]byte
	gen uint64
}

type ackHeap []ackTimer

func (h ackHeap) Len() int           { return len(h) }
func (h ackHeap) Less(i, k int) bool { return h[i].at.Before(h[k].at) }
func (h ackHeap) Swap(i, k int)      { h[i], h[k] = h[k], h[i] }
func (h *ackHeap) Push(x any)        { *h = append(*h, x.(ackTimer)) }
func (h *ackHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	*h = old[:len(old)-1]
	return t
}

func newAckTracker() *ackTracker {
	return &ackTracker{pending: make(map[[sphinx.IDSize]byte]*pendingAck), wake: make(chan struct{}, 1)}
}

// track starts (or restarts) the wait for j's ack until deadline.
func (t *ackTracker) track(j *job, mixes packetMixes, deadline time.Time) {
	t.mu.Lock()
	p := t.pending[j.ackID]
	if p == nil {
		p = &pendingAck{j: j}
		t.pending[j.ackID] = p
	}
	p.mixes = mixes
	p.gen++
	p.timed = true
	heap.Push(&t.timers, ackTimer{at: deadline, id: j.ackID, gen: p.gen})
	first := t.timers[0].id == j.ackID && t.timers[0].gen == p.gen
	t.mu.Unlock()
	if first {
		select {
		case t.wake <- struct{}{}:
		default:
		}
	}
}

// ack removes the fragment acknowledged by id and reports whether there was
// one, with the mixes its last transmission used.
func (t *ackTracker) ack(id [sphinx.IDSize]byte) (*job, packetMixes, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.pending[id]
	if !ok {
		return nil, packetMixes{}, false
	}
	delete(t.pending, id)
	return p.j, p.mixes, true
}

// forget drops j without an ack (given up).
func (t *ackTracker) forget(j *job) {
	t.mu.Lock()
	delete(t.pending, j.ackID)
	t.mu.Unlock()
}

// len returns how many fragments await an ack.
func (t *ackTracker) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.pending)
}

// expired pops the fragments whose deadline has passed and returns them, with
// the wait until the next deadline (or -1 when none).
func (t *ackTracker) expired(now time.Time) ([]*pendingAck, time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []*pendingAck
	for len(t.timers) > 0 {
		top := t.timers[0]
		if top.at.After(now) {
			return out, top.at.Sub(now)
		}
		heap.Pop(&t.timers)
		p, ok := t.pending[top.id]
		if !ok || p.gen != top.gen || !p.timed {
			continue
		}
		p.timed = false
		out = append(out, p)
	}
	return out, -1
}

// runAcks resends late fragments, or gives them up after the configured
// number of resends, until ctx ends.
func (c *Client) runAcks(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		late, wait := c.acks.expired(time.Now())
		for _, p := range late {
			if p.j.finished.Load() {
				// Acknowledged while it was being resent, and tracked
				// again by the resend.
				c.acks.forget(p.j)
				continue
			}
			c.routes.health.lost(p.mixes[:])
			if int(p.j.sends.Load()) > c.cfg.Retransmit.Max {
				c.acks.forget(p.j)
				c.stats.fragmentsLost.Add(1)
				c.log.Warn("fragment lost: no ack after retransmissions", "to", p.j.to, "sends", p.j.sends.Load())
				c.finish(p.j)
				continue
			}
			c.stats.retransmissions.Add(1)
			// The retry queue holds as many jobs as the window, and a job
			// is in it at most once, so this never blocks.
			c.stats.queued.Add(1)
			c.retries <- p.j
		}
		if wait < 0 {
			wait = time.Hour
		}
		timer.Reset(wait) // since Go 1.23 Reset needs no draining
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-c.acks.wake:
		}
	}
}
