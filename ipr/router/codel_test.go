package router

import (
	"testing"
	"time"
)

func newTestQueue() *packetQueue {
	return &packetQueue{
		maxPackets: 1000, maxBytes: 1 << 20,
		target: 50 * time.Millisecond, interval: 500 * time.Millisecond,
		maxPacket: 100,
	}
}

// A queue that drains as fast as it fills never drops, however long some
// packets wait below the target.
func TestCoDelNoDropsBelowTarget(t *testing.T) {
	q := newTestQueue()
	pkt := make([]byte, 100)
	for i := range 1000 {
		now := t0.Add(time.Duration(i) * 20 * time.Millisecond)
		for range 3 {
			q.push(pkt, now)
		}
		for range 3 {
			if _, ok, dropped := q.pop(now.Add(40 * time.Millisecond)); !ok || dropped != 0 {
				t.Fatalf("round %d: ok %v dropped %d", i, ok, dropped)
			}
		}
	}
}

// Twice as many packets arrive as leave: a standing queue. CoDel waits one
// interval above target, then drops at a rising rate; a count-only queue
// would let the delay grow to seconds without a drop.
func TestCoDelDropsStandingQueue(t *testing.T) {
	q := newTestQueue()
	pkt := make([]byte, 100)
	var drops int
	var firstDrop time.Duration = -1
	var firstAbove time.Duration = -1
	for tick := range 500 { // 5 s: one packet in every 10 ms, one out every 20 ms
		el := time.Duration(tick) * 10 * time.Millisecond
		now := t0.Add(el)
		if !q.push(pkt, now) {
			t.Fatal("hard limit hit")
		}
		if tick%2 == 1 {
			p, ok, dropped := q.pop(now)
			if !ok {
				t.Fatal("queue empty")
			}
			if firstAbove < 0 && now.Sub(p.at) >= q.target {
				firstAbove = el
			}
			if dropped > 0 && firstDrop < 0 {
				firstDrop = el
			}
			drops += dropped
		}
	}
	if drops == 0 {
		t.Fatal("no drops from a standing queue")
	}
	if firstDrop-firstAbove < q.interval {
		t.Fatalf("first drop %v after the delay passed target at %v: sooner than one interval", firstDrop, firstAbove)
	}
	t.Logf("%d drops, first at %v (delay above target from %v)", drops, firstDrop, firstAbove)
}

func TestQueueHardLimitsAndUnshift(t *testing.T) {
	q := newTestQueue()
	q.maxPackets, q.maxBytes = 3, 250
	if !q.push(make([]byte, 100), t0) || !q.push(make([]byte, 100), t0) {
		t.Fatal("push refused below the limits")
	}
	if q.push(make([]byte, 100), t0) {
		t.Fatal("push over the byte limit accepted")
	}
	if !q.push(make([]byte, 50), t0) || q.push(make([]byte, 1), t0) {
		t.Fatal("packet limit not applied")
	}
	p, ok, _ := q.pop(t0)
	if !ok || len(p.data) != 100 || q.len() != 2 || q.bytes != 150 {
		t.Fatalf("pop: %d bytes, len %d, bytes %d", len(p.data), q.len(), q.bytes)
	}
	q.unshift(p)
	if q.len() != 3 || q.bytes != 250 {
		t.Fatalf("unshift: len %d bytes %d", q.len(), q.bytes)
	}
	if n := q.reset(); n != 3 || q.len() != 0 || q.bytes != 0 {
		t.Fatalf("reset: %d, len %d, bytes %d", n, q.len(), q.bytes)
	}
}
