package vpn

import (
	"sync"
	"time"
)

// surbBudget estimates how many of our reply SURBs the exit holds and how
// many it should hold. The exit sends one reply per SURB, so its supply caps
// the download rate; each SURB costs about 400 bytes upstream, so holding
// far more than the traffic needs wastes the Poisson slots.
//
// The estimate is SURBs given minus replies received. Lost replies make it
// too high, which would starve the exit, so it is reset when the exit says
// it runs low, and when the exit reported a backlog but no reply came for
// stall.
//
// Two levels follow from it (need): the stock the exit should hold, min
// plus twice its backlog, and a floor, half the stock's, below which the
// exit must be topped up now, whatever it costs the upload. Between the
// two, SURBs go only where they cost no data: in the room a DataUp's data
// leaves, or alone in a slot with nothing queued (upstream.plan). So an
// upload, whose ACKs come back in replies that each spend a SURB, lets
// the stock sag towards the floor instead of giving the exit a SURB for
// every reply in slots its data needs; a page or a download that starts
// meanwhile still finds the floor's worth of SURBs at the exit (128 at the
// default stock: a megabyte in extended replies), and its backlog makes
// the top-up urgent at once.
type surbBudget struct {
	min, max int
	stall    time.Duration
	// perSURB is how many of the exit's backlog units (bundles of a
	// regular reply) one of our SURBs carries: 4 when our SURBs make
	// extended replies (client.Loopix.ExtendedReplies), else 1.
	perSURB int

	mu        sync.Mutex
	given     uint64 // SURBs sent to the exit
	used      uint64 // replies received, each one spent SURB
	base      uint64 // used at the last reset: outstanding = given − base − (used since)
	backlog   int
	lastReply time.Time
	resets    uint64
}

func newSURBBudget(min, max int, stall time.Duration, now time.Time) *surbBudget {
	return &surbBudget{min: min, max: max, stall: stall, perSURB: 1, lastReply: now}
}

// carrying sets perSURB (at least 1) and returns b.
func (b *surbBudget) carrying(perSURB int) *surbBudget {
	b.perSURB = max(perSURB, 1)
	return b
}

func (b *surbBudget) outstandingLocked() int {
	spent := b.used + b.base
	if spent >= b.given {
		return 0
	}
	return int(b.given - spent)
}

// need is how many SURBs the exit lacks: deficit below the stock it
// should hold, urgent below the floor it must not fall under. Either is at
// most zero when the exit holds that much.
func (b *surbBudget) need(now time.Time) (deficit, urgent int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.backlog > 0 && now.Sub(b.lastReply) > b.stall && b.outstandingLocked() > 0 {
		// The exit had data for us but nothing came: assume the
		// SURBs we counted were lost with their replies.
		b.resetLocked()
	}
	// The exit counts its backlog in regular replies' bundles; an
	// extended reply carries perSURB of them.
	backlog := (b.backlog + b.perSURB - 1) / b.perSURB
	out := b.outstandingLocked()
	return min(b.min+2*backlog, b.max) - out, min(b.min/2+2*backlog, b.max) - out
}

func (b *surbBudget) gave(n int) {
	b.mu.Lock()
	b.given += uint64(n)
	b.mu.Unlock()
}

// replied notes a reply; backlog < 0 leaves the last backlog as it is.
func (b *surbBudget) replied(backlog int, now time.Time) {
	b.mu.Lock()
	b.used++
	if backlog >= 0 {
		b.backlog = backlog
	}
	b.lastReply = now
	b.mu.Unlock()
}

// low is the exit saying it runs out of SURBs.
func (b *surbBudget) low() {
	b.mu.Lock()
	b.resetLocked()
	b.mu.Unlock()
}

func (b *surbBudget) resetLocked() {
	b.base = b.given - b.used
	b.resets++
}

func (b *surbBudget) snapshot() (given, used uint64, outstanding, backlog int, resets uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.given, b.used, b.outstandingLocked(), b.backlog, b.resets
}
