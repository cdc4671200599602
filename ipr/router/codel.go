package router

import (
	"math"
	"time"
)

// packetQueue is one session's downstream queue with CoDel (RFC 8289) at its
// head. The mixnet's Poisson stream is the tunnel's bottleneck, so inner TCP
// fills whatever queue stands before it; dropping by sojourn time tells TCP
// early that it is too fast, and keeps the queue's delay near target however
// long it is. The hard limits only bound memory.
type packetQueue struct {
	items []queuedPacket // items[head:] are queued
	head  int
	bytes int

	maxPackets, maxBytes int
	target, interval     time.Duration
	// maxPacket is the most bytes one dequeue opportunity carries: below
	// it the queue is no standing queue, whatever its sojourn times.
	maxPacket int

	// CoDel state, named as in RFC 8289.
	firstAboveTime time.Time
	dropNext       time.Time
	count          uint32
	lastCount      uint32
	dropping       bool
}

type queuedPacket struct {
	data []byte
	at   time.Time
}

func (q *packetQueue) len() int { return len(q.items) - q.head }

// push appends a packet; false when the hard limits refuse it.
func (q *packetQueue) push(pkt []byte, now time.Time) bool {
	if q.len() >= q.maxPackets || q.bytes+len(pkt) > q.maxBytes {
		return false
	}
	if q.head > 0 && q.head >= len(q.items)/2 {
		// Slide the live part down rather than grow forever.
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	q.items = append(q.items, queuedPacket{data: pkt, at: now})
	q.bytes += len(pkt)
	return true
}

// unshift puts back a packet pop returned, at the head: it did not fit the
// bundle being packed and goes first into the next one.
func (q *packetQueue) unshift(p queuedPacket) {
	if q.head > 0 {
		q.head--
		q.items[q.head] = p
	} else {
		q.items = append([]queuedPacket{p}, q.items...)
	}
	q.bytes += len(p.data)
}

// doDequeue takes the head packet and says whether CoDel may drop it.
func (q *packetQueue) doDequeue(now time.Time) (queuedPacket, bool, bool) {
	if q.len() == 0 {
		q.firstAboveTime = time.Time{}
		return queuedPacket{}, false, false
	}
	p := q.items[q.head]
	q.items[q.head] = queuedPacket{}
	q.head++
	q.bytes -= len(p.data)
	okToDrop := false
	if now.Sub(p.at) < q.target || q.bytes <= q.maxPacket {
		q.firstAboveTime = time.Time{}
	} else if q.firstAboveTime.IsZero() {
		q.firstAboveTime = now.Add(q.interval)
	} else if !now.Before(q.firstAboveTime) {
		okToDrop = true
	}
	return p, true, okToDrop
}

// pop returns the next packet to send and how many packets CoDel dropped on
// the way.
func (q *packetQueue) pop(now time.Time) (p queuedPacket, ok bool, dropped int) {
	p, ok, okToDrop := q.doDequeue(now)
	if !ok {
		q.dropping = false
		return p, false, 0
	}
	if q.dropping {
		if !okToDrop {
			q.dropping = false
		}
		for !now.Before(q.dropNext) && q.dropping {
			dropped++
			q.count++
			if p, ok, okToDrop = q.doDequeue(now); !okToDrop {
				q.dropping = false
			} else {
				q.dropNext = q.controlLaw(q.dropNext)
			}
		}
	} else if okToDrop {
		dropped++
		p, ok, _ = q.doDequeue(now)
		q.dropping = true
		delta := q.count - q.lastCount
		q.count = 1
		if delta > 1 && now.Sub(q.dropNext) < 16*q.interval {
			q.count = delta
		}
		q.dropNext = q.controlLaw(now)
		q.lastCount = q.count
	}
	return p, ok, dropped
}

// controlLaw spaces drops by interval/√count, so the drop rate grows until
// the sender slows down.
func (q *packetQueue) controlLaw(t time.Time) time.Time {
	return t.Add(time.Duration(float64(q.interval) / math.Sqrt(float64(q.count))))
}

// reset empties the queue and returns how many packets it held.
func (q *packetQueue) reset() int {
	n := q.len()
	clear(q.items)
	q.items, q.head, q.bytes = q.items[:0], 0, 0
	q.dropping, q.count, q.lastCount = false, 0, 0
	q.firstAboveTime, q.dropNext = time.Time{}, time.Time{}
	return n
}
