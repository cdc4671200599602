package ipr

import (
	"math"
	"time"
)

// Defaults for ResequencerConfig.
const (
	// DefaultMaxBuffered bounds the messages held behind a gap: at Nym's 50
	// packets/s, over a second of traffic, far beyond any mixing delay.
	DefaultMaxBuffered = 64
	// defaultHopDelay and defaultMixHops are Nym's mixing: three layers of
	// exponential delays of mean 15 ms.
	defaultHopDelay = 15 * time.Millisecond
	defaultMixHops  = 3
	// defaultReorderQuantile: a message still missing when 99.9% of
	// messages would have arrived is taken as lost.
	defaultReorderQuantile = 0.999
	// defaultMaxTimeoutFactor bounds the timeout learned from late
	// arrivals, as a multiple of the configured one.
	defaultMaxTimeoutFactor = 8
	// learnMargin: a learned timeout is the wait the late message needed
	// plus a quarter, since the next one may be later still.
	learnMargin = 4
	// decayAfter gaps given up on timeout with no late arrival since, the
	// learned timeout halves towards the configured one (as RACK, RFC 8985
	// 6.2, resets its reordering window after 16 loss recoveries).
	decayAfter = 16
	// skipMemory is how many gaps given up on timeout are remembered, to
	// tell from a late message how long its gap should have been waited for.
	skipMemory = 16
)

// DefaultReorderTimeout is ReorderTimeout for Nym's default mixing.
var DefaultReorderTimeout = ReorderTimeout(defaultHopDelay, defaultMixHops, defaultReorderQuantile)

// ReorderTimeout is how long to wait for a missing message before giving it
// up, when each of hops mixes delays it by an exponential delay of mean
// hopDelay: the given quantile of the total mixing delay, which follows an
// Erlang distribution. A message sent before one that has arrived has at most
// that much delay left, so waiting longer rarely helps. For 3 hops of 15 ms,
// the 0.999 quantile is about 168 ms (the mean is 45 ms).
func ReorderTimeout(hopDelay time.Duration, hops int, quantile float64) time.Duration {
	if hopDelay <= 0 || hops <= 0 {
		return 0
	}
	quantile = min(max(quantile, 0), 0.999999)
	// erlangCDF(x) = 1 - Σ_{k<hops} e^{-x} x^k / k!, in units of hopDelay.
	erlangCDF := func(x float64) float64 {
		term, sum := math.Exp(-x), 0.0
		for k := range hops {
			if k > 0 {
				term *= x / float64(k)
			}
			sum += term
		}
		return 1 - sum
	}
	lo, hi := 0.0, float64(hops)
	for erlangCDF(hi) < quantile {
		hi *= 2
	}
	for range 60 { // bisection: 60 halvings are far below a nanosecond
		if mid := (lo + hi) / 2; erlangCDF(mid) < quantile {
			lo = mid
		} else {
			hi = mid
		}
	}
	return time.Duration(hi * float64(hopDelay))
}

// ResequencerConfig bounds how long and how much a Resequencer waits.
type ResequencerConfig struct {
	// Timeout is how long a message may wait behind a gap before the gap
	// is given up, at first. Zero means DefaultReorderTimeout.
	Timeout time.Duration
	// MaxTimeout bounds the timeout the Resequencer learns from messages
	// that come after their gap was given up. Zero means 8 × Timeout; a
	// value below Timeout turns learning off.
	MaxTimeout time.Duration
	// MaxBuffered is the most messages held behind gaps; one more gives up
	// the oldest gap at once. Zero means DefaultMaxBuffered.
	MaxBuffered int
}

// ReorderStats counts what a Resequencer did.
type ReorderStats struct {
	Released    uint64 // messages handed on, in order or late
	Reordered   uint64 // messages that arrived early and waited for a gap to fill
	GapsSkipped uint64 // gaps given up (on timeout, on a full buffer or on a jump)
	SeqsSkipped uint64 // sequence numbers inside those gaps
	Late        uint64 // messages from a given-up gap that came after all; released out of order
	Duplicates  uint64 // messages seen before; dropped
	TooOld      uint64 // messages too far behind to tell from duplicates; dropped
}

// Add adds the counts of o to s.
func (s *ReorderStats) Add(o ReorderStats) {
	s.Released += o.Released
	s.Reordered += o.Reordered
	s.GapsSkipped += o.GapsSkipped
	s.SeqsSkipped += o.SeqsSkipped
	s.Late += o.Late
	s.Duplicates += o.Duplicates
	s.TooOld += o.TooOld
}

// Sub returns s - o, for counting what one call did.
func (s ReorderStats) Sub(o ReorderStats) ReorderStats {
	return ReorderStats{
		Released:    s.Released - o.Released,
		Reordered:   s.Reordered - o.Reordered,
		GapsSkipped: s.GapsSkipped - o.GapsSkipped,
		SeqsSkipped: s.SeqsSkipped - o.SeqsSkipped,
		Late:        s.Late - o.Late,
		Duplicates:  s.Duplicates - o.Duplicates,
		TooOld:      s.TooOld - o.TooOld,
	}
}

// Resequencer puts one direction of one session back in sequence order: the
// mixnet delays each packet independently, and TCP inside the tunnel would
// read the reordering as loss. Messages are released in order; a gap is
// given up when the message waiting longest behind it has waited the
// timeout, or when more than MaxBuffered messages wait. A message of a
// given-up gap that arrives later is still released (late beats lost for
// TCP), unless it is a duplicate.
//
// The timeout starts at Timeout, the mixing's own quantile, but the path
// delays more than its mixing: a reply waits for its gateway's next
// downstream slot behind the replies queued before it, and a loaded node
// adds its queue. Each give-up shows TCP a hole, which it answers with a
// retransmission and a halved window, so a message that comes late after
// all raises the timeout to the wait it needed (up to MaxTimeout); gaps given
// up with nothing coming late bring it back down.
//
// Time is passed in, so tests run on a fake clock. A Resequencer is not safe
// for concurrent use.
type Resequencer[T any] struct {
	cfg     ResequencerConfig
	next    uint64 // the sequence number to release next
	pending map[uint64]pendingMsg[T]
	seen    seqWindow // released sequence numbers below next
	stats   ReorderStats

	timeout    time.Duration          // the wait now: cfg.Timeout, raised by late arrivals
	skipped    [skipMemory]skippedGap // the last gaps given up on timeout, a ring
	skipHead   int                    // the next slot of skipped to fill
	quietSkips int                    // gaps given up on timeout since the last late arrival
}

// skippedGap is a run of sequence numbers given up on timeout at `at`,
// after a message behind them had waited `waited`.
type skippedGap struct {
	from, to uint64 // [from, to)
	at       time.Time
	waited   time.Duration
}

type pendingMsg[T any] struct {
	msg     T
	arrived time.Time
}

// NewResequencer returns a Resequencer expecting sequence number 0 first.
func NewResequencer[T any](cfg ResequencerConfig) *Resequencer[T] {
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultReorderTimeout
	}
	if cfg.MaxBuffered <= 0 {
		cfg.MaxBuffered = DefaultMaxBuffered
	}
	if cfg.MaxTimeout == 0 {
		cfg.MaxTimeout = defaultMaxTimeoutFactor * cfg.Timeout
	}
	return &Resequencer[T]{cfg: cfg, timeout: cfg.Timeout, pending: make(map[uint64]pendingMsg[T])}
}

// Timeout is how long a message now waits behind a gap before the gap is
// given up: the configured timeout, or more, learned from late arrivals.
func (r *Resequencer[T]) Timeout() time.Duration { return r.timeout }

// Stats returns the counts so far.
func (r *Resequencer[T]) Stats() ReorderStats { return r.stats }

// Buffered is the number of messages waiting behind a gap.
func (r *Resequencer[T]) Buffered() int { return len(r.pending) }

// Next is the sequence number the resequencer waits for.
func (r *Resequencer[T]) Next() uint64 { return r.next }

// Push takes message seq, which arrived at now, and calls release for every
// message that is now due, in order.
func (r *Resequencer[T]) Push(seq uint64, msg T, now time.Time, release func(T)) {
	switch {
	case seq < r.next:
		switch r.seen.mark(seq) {
		case markNew:
			r.learn(seq, now)
			r.stats.Late++
			r.stats.Released++
			release(msg)
		case markDuplicate:
			r.stats.Duplicates++
		case markTooOld:
			r.stats.TooOld++
		}
		return
	case seq == r.next:
		r.releaseOne(msg, release)
		r.drain(release)
	default:
		if _, dup := r.pending[seq]; dup {
			r.stats.Duplicates++
			return
		}
		if seq-r.next >= windowSize {
			// The sender is so far ahead that nothing we hold or wait for
			// could matter to it any more: give everything up and follow.
			r.skipTo(seq, release)
			r.releaseOne(msg, release)
			r.drain(release)
			return
		}
		r.pending[seq] = pendingMsg[T]{msg: msg, arrived: now}
		for len(r.pending) > r.cfg.MaxBuffered {
			r.skipGap(release)
		}
	}
	r.Expire(now, release)
}

// Expire gives up every gap a message has waited behind for Timeout by now,
// calling release for the messages that become due.
func (r *Resequencer[T]) Expire(now time.Time, release func(T)) {
	for len(r.pending) > 0 {
		deadline, ok := r.Deadline()
		if !ok || now.Before(deadline) {
			return
		}
		from := r.next
		r.skipGap(release)
		r.skipped[r.skipHead] = skippedGap{from: from, to: r.next, at: now, waited: now.Sub(deadline) + r.timeout}
		r.skipHead = (r.skipHead + 1) % skipMemory
		if r.quietSkips++; r.quietSkips >= decayAfter {
			r.quietSkips = 0
			r.timeout = max(r.cfg.Timeout, r.timeout/2)
		}
	}
}

// learn raises the timeout after message seq came at now, after its gap
// was given up: to the wait it would have needed, and a margin.
func (r *Resequencer[T]) learn(seq uint64, now time.Time) {
	for _, g := range r.skipped {
		if g.at.IsZero() || seq < g.from || seq >= g.to {
			continue
		}
		need := g.waited + now.Sub(g.at)
		need += need / learnMargin
		r.timeout = max(r.timeout, min(need, r.cfg.MaxTimeout))
		r.quietSkips = 0
		return
	}
}

// Deadline is when Expire will next have something to do; false when
// nothing waits.
func (r *Resequencer[T]) Deadline() (time.Time, bool) {
	var oldest time.Time
	for _, p := range r.pending {
		if oldest.IsZero() || p.arrived.Before(oldest) {
			oldest = p.arrived
		}
	}
	return oldest.Add(r.timeout), !oldest.IsZero()
}

// skipGap gives up the gap before the lowest waiting message.
func (r *Resequencer[T]) skipGap(release func(T)) {
	lowest, found := uint64(0), false
	for seq := range r.pending {
		if !found || seq < lowest {
			lowest, found = seq, true
		}
	}
	if !found {
		return
	}
	r.skipTo(lowest, release)
	r.drain(release)
}

// skipTo releases every waiting message below seq, in order, and moves next
// to seq, counting the sequence numbers that never came.
func (r *Resequencer[T]) skipTo(seq uint64, release func(T)) {
	r.stats.GapsSkipped++
	for r.next < seq {
		if p, ok := r.pending[r.next]; ok {
			delete(r.pending, r.next)
			r.stats.Reordered++
			r.releaseOne(p.msg, release)
			continue
		}
		// Jump over a run of missing numbers at once when nothing waits in
		// it, so a huge jump costs nothing.
		end := seq
		for s := range r.pending {
			if s > r.next && s < end {
				end = s
			}
		}
		r.stats.SeqsSkipped += end - r.next
		r.next = end
	}
}

// drain releases the waiting messages that are now in order.
func (r *Resequencer[T]) drain(release func(T)) {
	for {
		p, ok := r.pending[r.next]
		if !ok {
			return
		}
		delete(r.pending, r.next)
		r.stats.Reordered++
		r.releaseOne(p.msg, release)
	}
}

func (r *Resequencer[T]) releaseOne(msg T, release func(T)) {
	r.seen.mark(r.next)
	r.next++
	r.stats.Released++
	release(msg)
}

// seqWindow remembers which of the last windowSize sequence numbers were
// released, like WireGuard's replay filter: a ring of bit blocks.
type seqWindow struct {
	top   uint64 // highest number marked
	any   bool   // top is meaningful
	rings [ringBlocks]uint64
}

const (
	ringBlocks = 16
	blockBits  = 64
	// windowSize is how far behind the highest released number we can
	// still tell a late message from a duplicate.
	windowSize = (ringBlocks - 1) * blockBits
)

type markResult int

const (
	markNew markResult = iota
	markDuplicate
	markTooOld
)

func (w *seqWindow) mark(seq uint64) markResult {
	block := seq / blockBits
	switch {
	case !w.any || seq > w.top:
		if w.any {
			// Clear the blocks the window slides past.
			cur := w.top / blockBits
			for i := uint64(1); i <= min(block-cur, ringBlocks); i++ {
				w.rings[(cur+i)%ringBlocks] = 0
			}
		}
		w.top, w.any = seq, true
	case w.top-seq >= windowSize:
		return markTooOld
	}
	bit := uint64(1) << (seq % blockBits)
	b := &w.rings[block%ringBlocks]
	if *b&bit != 0 {
		return markDuplicate
	}
	*b |= bit
	return markNew
}
