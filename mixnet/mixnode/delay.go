package mixnode

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/nym-go/nym/mixnet/sphinx"
)

// heldPacket waits in the delay stage until release.
type heldPacket struct {
	release time.Duration // arrival + capped delay, on the Mixer's clock (see Mixer.now)
	next    [sphinx.AddressSize]byte
	pkt     []byte
	odd     bool   // key-rotation parity, passed on to Forward
	packet  uint64 // trace id, passed on to Config.Traced; 0 when not traced
}

// releaseHeap is a min-heap of held packets by release time. It is written
// out rather than built on container/heap, whose interface boxes every
// element and would allocate per packet.
type releaseHeap []heldPacket

func (h *releaseHeap) push(p heldPacket) {
	*h = append(*h, p)
	s := *h
	for i := len(s) - 1; i > 0; {
		parent := (i - 1) / 2
		if s[parent].release <= s[i].release {
			break
		}
		s[i], s[parent] = s[parent], s[i]
		i = parent
	}
}

// pop removes and returns the earliest packet. The heap must not be empty.
func (h *releaseHeap) pop() heldPacket {
	s := *h
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	s[last] = heldPacket{} // let the packet buffer go
	s = s[:last]
	for i := 0; ; {
		least, l, r := i, 2*i+1, 2*i+2
		if l < len(s) && s[l].release < s[least].release {
			least = l
		}
		if r < len(s) && s[r].release < s[least].release {
			least = r
		}
		if least == i {
			break
		}
		s[i], s[least] = s[least], s[i]
		i = least
	}
	*h = s
	return top
}

// delayStage holds packets until their release time. Workers add packets;
// one goroutine (runDelay) releases them. The heap is shared under a mutex
// rather than fed through a channel so that a worker can tell, in the same
// critical section as its push, whether the releaser is asleep past the new
// packet's deadline and must be woken: no lost wake-ups, and no wake-up at all
// for the common packet that is not the new earliest.
type delayStage struct {
	max     int
	sleeper sleeper

	mu     sync.Mutex
	held   releaseHeap
	asleep bool          // the releaser is (about to be) asleep …
	until  time.Duration // … until this deadline
}

// add holds p, or reports false when MaxHeld packets are held already.
func (d *delayStage) add(p heldPacket) bool {
	d.mu.Lock()
	if len(d.held) >= d.max {
		d.mu.Unlock()
		return false
	}
	d.held.push(p)
	wake := d.asleep && p.release < d.until
	if wake {
		d.asleep = false // one wake-up is enough
	}
	d.mu.Unlock()
	if wake {
		d.sleeper.wake()
	}
	return true
}

// discard drops every held packet and returns how many there were.
func (d *delayStage) discard() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := len(d.held)
	clear(d.held)
	d.held = d.held[:0]
	return n
}

// len is the number of packets held.
func (d *delayStage) len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.held)
}

// runDelay releases held packets at their deadlines until ctx is done. Run
// wakes it when ctx ends.
func (m *Mixer) runDelay(ctx context.Context, precise bool) {
	if precise {
		// Deliberately never unlocked: the thread, with its changed
		// timer slack, ends with this goroutine.
		if err := preciseThread(); err != nil {
			m.cfg.Logger.Warn("mixnode: delays may run late", "err", err)
		}
	}
	d := &m.delay
	var due []heldPacket // reused: released packets, forwarded outside the lock
	for {
		now := m.now()
		d.mu.Lock()
		if ctx.Err() != nil {
			d.mu.Unlock()
			return // Run counts what is left
		}
		d.asleep = false
		for len(d.held) > 0 && d.held[0].release <= now {
			due = append(due, d.held.pop())
		}
		wait := time.Duration(-1)
		if len(due) == 0 {
			// Nothing is due: sleep until the earliest deadline. Workers
			// see asleep and until under the same lock as their push.
			d.asleep, d.until = true, time.Duration(math.MaxInt64)
			if len(d.held) > 0 {
				d.until = d.held[0].release
				wait = d.until - now
			}
		}
		d.mu.Unlock()

		if len(due) == 0 {
			d.sleeper.sleep(wait)
			continue
		}
		for i, p := range due {
			m.forward(p.next, p.pkt, p.odd, m.now()-p.release, p.packet)
			due[i] = heldPacket{}
		}
		due = due[:0]
	}
}
