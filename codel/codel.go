// Package codel is a FIFO packet queue with CoDel (Controlled Delay,
// RFC 8289) at its head: the one queue that stands in front of a mixnet
// stream at either end of the VPN tunnel.
//
// A mixnet stream sends at the pace of its clock (Poisson slots, SURBs), so
// TCP inside the tunnel fills whatever queue stands before it. Dropping by
// sojourn time tells TCP early that it is too fast and keeps the queue's
// delay near Target however long the queue is; the hard limits (packets,
// bytes) only bound memory.
//
// Queue is one FIFO with CoDel; FQ (FQ-CoDel, RFC 8290) puts a Queue per
// flow behind a deficit round robin, so that sparse flows do not wait
// behind bulk ones. The tunnel's two ends use FQ.
package codel

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Defaults: RFC 8289's target and interval, and memory guards far above
// what CoDel lets build up at a mixnet's rates.
const (
	DefaultTarget     = 5 * time.Millisecond
	DefaultInterval   = 100 * time.Millisecond
	DefaultMaxPackets = 1024
	DefaultMaxBytes   = 1 << 20
)

// Config configures a Queue. Zero fields take the defaults.
type Config struct {
	// Target is the sojourn time the queue may keep standing; Interval is
	// how long the sojourn must stay above Target before CoDel drops, and
	// its first drop spacing (RFC 8289: about a round trip). Defaults
	// DefaultTarget and DefaultInterval. Target must be below Interval.
	Target, Interval time.Duration
	// MaxPacket is the most bytes one dequeue opportunity carries (RFC
	// 8289's maxpacket): with no more than this queued behind the head,
	// the queue is no standing queue, whatever its sojourn times, and
	// CoDel does not drop. Zero means only a lone packet is spared; a
	// caller that packs several packets into one send (a bundle) sets
	// the bundle's size.
	MaxPacket int
	// MaxPackets and MaxBytes hard-limit the queue; Push refuses a packet
	// over either. Defaults DefaultMaxPackets and DefaultMaxBytes.
	MaxPackets, MaxBytes int
	// Release, when set, is called with every packet the queue discards
	// (CoDel drops, Push refusals, Reset), so a caller can return pooled
	// buffers. It runs on the caller's goroutine, inside the call that
	// discarded the packet.
	Release func([]byte)
}

func (c Config) withDefaults() (Config, error) {
	if c.Target < 0 || c.Interval < 0 || c.MaxPacket < 0 || c.MaxPackets < 0 || c.MaxBytes < 0 {
		return c, errors.New("codel: negative Config value")
	}
	if c.Target == 0 {
		c.Target = DefaultTarget
	}
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.MaxPackets == 0 {
		c.MaxPackets = DefaultMaxPackets
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.Target >= c.Interval {
		return c, fmt.Errorf("codel: target %v not below interval %v", c.Target, c.Interval)
	}
	return c, nil
}

// Queue is a FIFO of packets with CoDel at its head. It is not safe for
// concurrent use: the caller serializes its calls (with the lock that also
// guards whatever it decides from Len or Bytes). Make it with New.
type Queue struct {
	cfg   Config
	items []entry // items[head:] are queued
	head  int
	bytes int

	// CoDel state, named as in RFC 8289.
	firstAboveTime time.Time // when the sojourn will have been above target for an interval; zero when below
	dropNext       time.Time // when to drop next, while dropping
	count          uint32    // drops since entering the drop state (or the count reused)
	lastCount      uint32    // count when the drop state was last entered
	dropping       bool

	stats Stats
}

type entry struct {
	data []byte
	at   time.Time
}

// Stats counts the packets a Queue discarded.
type Stats struct {
	// Sojourn: dropped by CoDel at the head. Full: refused by the hard
	// limits. Reset: discarded by Reset.
	Sojourn, Full, Reset uint64
}

// New returns an empty queue.
func New(cfg Config) (*Queue, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Queue{cfg: cfg}, nil
}

// Len is the number of packets queued.
func (q *Queue) Len() int { return len(q.items) - q.head }

// Bytes is the sum of the queued packets' lengths.
func (q *Queue) Bytes() int { return q.bytes }

// Stats returns the discard counters.
func (q *Queue) Stats() Stats { return q.stats }

// Push appends pkt, which arrived at now, and takes it over: the queue
// hands it back through PopIf or discards it through Config.Release. It
// reports false when the hard limits refused it (already released).
func (q *Queue) Push(pkt []byte, now time.Time) bool {
	if q.Len() >= q.cfg.MaxPackets || q.bytes+len(pkt) > q.cfg.MaxBytes {
		q.stats.Full++
		q.release(pkt)
		return false
	}
	if q.head > 0 && q.head >= len(q.items)/2 {
		// Slide the live part down rather than grow forever.
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	q.items = append(q.items, entry{data: pkt, at: now})
	q.bytes += len(pkt)
	return true
}

// PopIf is one dequeue opportunity at now: CoDel first drops at the head
// what has waited too long (RFC 8289's dequeue), then the head packet is
// removed and returned with its arrival time, if fits (nil: any) accepts its
// length. ok is false when the queue is empty or the head does not fit; a
// head that does not fit stays at the head. A caller packing several packets
// into one send calls PopIf until it reports false.
func (q *Queue) PopIf(now time.Time, fits func(n int) bool) (pkt []byte, at time.Time, ok bool) {
	e, ok, okToDrop := q.doDequeue(now)
	switch {
	case !ok:
		q.dropping = false
		return nil, time.Time{}, false
	case q.dropping:
		if !okToDrop {
			// The sojourn fell below target (or the queue to one
			// opportunity's worth): leave the drop state.
			q.dropping = false
		}
		for q.dropping && !now.Before(q.dropNext) {
			q.drop(e)
			q.count++
			if e, ok, okToDrop = q.doDequeue(now); !okToDrop {
				q.dropping = false
			} else {
				q.dropNext = q.controlLaw(q.dropNext)
			}
		}
	case okToDrop:
		q.drop(e)
		e, ok, _ = q.doDequeue(now)
		q.dropping = true
		// Dropping again soon after the last drop state: start near the
		// drop rate that controlled the queue then, not from scratch.
		delta := q.count - q.lastCount
		q.count = 1
		if delta > 1 && now.Sub(q.dropNext) < 16*q.cfg.Interval {
			q.count = delta
		}
		q.dropNext = q.controlLaw(now)
		q.lastCount = q.count
	}
	if !ok {
		return nil, time.Time{}, false
	}
	if fits != nil && !fits(len(e.data)) {
		q.Unshift(e.data, e.at)
		return nil, time.Time{}, false
	}
	return e.data, e.at, true
}

// Peek returns the head packet without dequeuing it: CoDel is not
// consulted, so the head PopIf returns next may be a later one.
func (q *Queue) Peek() (pkt []byte, ok bool) {
	if q.Len() == 0 {
		return nil, false
	}
	return q.items[q.head].data, true
}

// Unshift puts back at the head a packet PopIf returned, with the arrival
// time PopIf gave, so that it goes first next time and CoDel still sees how
// long it has waited. It bypasses the hard limits (the packet was in the
// queue a moment ago).
func (q *Queue) Unshift(pkt []byte, at time.Time) {
	e := entry{data: pkt, at: at}
	if q.head > 0 {
		q.head--
		q.items[q.head] = e
	} else {
		q.items = append(q.items, entry{})
		copy(q.items[1:], q.items)
		q.items[0] = e
	}
	q.bytes += len(pkt)
}

// Reset discards every queued packet through Config.Release, clears the
// CoDel state and returns how many packets it discarded.
func (q *Queue) Reset() int {
	n := q.Len()
	for _, e := range q.items[q.head:] {
		q.release(e.data)
	}
	clear(q.items)
	q.items, q.head, q.bytes = q.items[:0], 0, 0
	q.firstAboveTime, q.dropNext = time.Time{}, time.Time{}
	q.count, q.lastCount, q.dropping = 0, 0, false
	q.stats.Reset += uint64(n)
	return n
}

// doDequeue removes the head and says whether CoDel may drop it: whether
// the sojourn has been above target for at least an interval with more than
// MaxPacket bytes standing behind it (RFC 8289's dodequeue).
func (q *Queue) doDequeue(now time.Time) (e entry, ok, okToDrop bool) {
	if q.Len() == 0 {
		q.firstAboveTime = time.Time{}
		return entry{}, false, false
	}
	e = q.popHead()
	switch {
	case now.Sub(e.at) < q.cfg.Target || q.bytes <= q.cfg.MaxPacket:
		q.firstAboveTime = time.Time{}
	case q.firstAboveTime.IsZero():
		q.firstAboveTime = now.Add(q.cfg.Interval)
	case !now.Before(q.firstAboveTime):
		okToDrop = true
	}
	return e, true, okToDrop
}

// popHead removes the head without consulting CoDel; the queue is not
// empty.
func (q *Queue) popHead() entry {
	e := q.items[q.head]
	q.items[q.head] = entry{}
	q.head++
	q.bytes -= len(e.data)
	if q.Len() == 0 {
		q.items, q.head = q.items[:0], 0
	}
	return e
}

// controlLaw spaces drops by interval/√count, so the drop rate grows until
// the senders slow down (TCP's rate goes as 1/√(drop probability)).
func (q *Queue) controlLaw(t time.Time) time.Time {
	return t.Add(time.Duration(float64(q.cfg.Interval) / math.Sqrt(float64(q.count))))
}

func (q *Queue) drop(e entry) {
	q.stats.Sojourn++
	q.release(e.data)
}

func (q *Queue) release(pkt []byte) {
	if q.cfg.Release != nil {
		q.cfg.Release(pkt)
	}
}
