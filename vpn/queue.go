package vpn

import (
	"math"
	"sync"
	"time"
)

// upQueue holds upstream IP packets in front of the mixnet's Poisson stream.
// It is bounded by sojourn time (CoDel, RFC 8289): when packets have waited
// longer than target for a whole interval, it drops at the head, more often
// the longer that lasts, so TCP inside the tunnel backs off after about one
// round trip instead of filling a deep buffer. maxBytes is only a memory
// guard, far above what CoDel lets build up.
type upQueue struct {
	target, interval time.Duration
	maxBytes         int

	mu    sync.Mutex
	pkts  []queued
	bytes int
	// CoDel state.
	firstAbove time.Time
	dropping   bool
	dropNext   time.Time
	count      int
	// Counters.
	sojournDrops, fullDrops uint64

	ready chan struct{} // signalled (capacity 1) when a packet is pushed
}

type queued struct {
	pkt []byte
	at  time.Time
}

func newUpQueue(target, interval time.Duration, maxBytes int) *upQueue {
	return &upQueue{target: target, interval: interval, maxBytes: maxBytes, ready: make(chan struct{}, 1)}
}

// push copies pkt into the queue; false when the memory guard refused it.
func (q *upQueue) push(pkt []byte, now time.Time) bool {
	q.mu.Lock()
	if q.bytes+len(pkt) > q.maxBytes {
		q.fullDrops++
		q.mu.Unlock()
		return false
	}
	q.pkts = append(q.pkts, queued{pkt: append([]byte(nil), pkt...), at: now})
	q.bytes += len(pkt)
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
	return true
}

// popIf removes and returns the head packet if fits accepts its length,
// after CoDel has dropped what waited too long. ok is false when the queue
// is empty or the head does not fit.
func (q *upQueue) popIf(now time.Time, fits func(n int) bool) (pkt []byte, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.pkts) > 0 {
		head := q.pkts[0]
		if q.shouldDrop(head, now) {
			q.removeHead()
			q.sojournDrops++
			continue
		}
		if !fits(len(head.pkt)) {
			return nil, false
		}
		q.removeHead()
		return head.pkt, true
	}
	q.firstAbove = time.Time{}
	q.dropping = false
	return nil, false
}

func (q *upQueue) removeHead() {
	q.bytes -= len(q.pkts[0].pkt)
	q.pkts[0] = queued{}
	q.pkts = q.pkts[1:]
	if len(q.pkts) == 0 {
		q.pkts = q.pkts[:0:0] // let the backing array go
	}
}

// shouldDrop is CoDel's dequeue decision for head. q.mu is held.
func (q *upQueue) shouldDrop(head queued, now time.Time) bool {
	okToDrop := false
	if now.Sub(head.at) < q.target || len(q.pkts) == 1 {
		// Below target, or the last packet: a single packet is no
		// standing queue.
		q.firstAbove = time.Time{}
	} else if q.firstAbove.IsZero() {
		q.firstAbove = now.Add(q.interval)
	} else if !now.Before(q.firstAbove) {
		okToDrop = true
	}
	if q.dropping {
		if !okToDrop {
			q.dropping = false
			return false
		}
		if !now.Before(q.dropNext) {
			q.count++
			q.dropNext = q.controlLaw(q.dropNext)
			return true
		}
		return false
	}
	if okToDrop {
		q.dropping = true
		// Start near the last drop rate if we were dropping recently.
		if q.count > 2 && now.Sub(q.dropNext) < 16*q.interval {
			q.count -= 2
		} else {
			q.count = 1
		}
		q.dropNext = q.controlLaw(now)
		return true
	}
	return false
}

func (q *upQueue) controlLaw(t time.Time) time.Time {
	return t.Add(time.Duration(float64(q.interval) / math.Sqrt(float64(q.count))))
}

// len returns the packets and bytes queued.
func (q *upQueue) len() (pkts, bytes int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.pkts), q.bytes
}

func (q *upQueue) drops() (sojourn, full uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.sojournDrops, q.fullDrops
}
