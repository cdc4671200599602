package gateway

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nym-go/nym/mixnet/gatewire"
	"github.com/nym-go/nym/mixnet/link"
)

// Downstream shaping (gatewire.Shape). Pushing each packet to its client as
// it arrives shows a watcher of the client's link when, and how much, the
// client downloads. A shaped session instead has one clock, its pacer: every
// interval it sends one Slot of one length, carrying what waits for the
// client (packed, several small messages to a slot) or nothing. Every
// message for the client passes through the pacer's bounded queue; when the
// queue is full, live deliveries go to the store and the session's drainer
// feeds them back as the queue empties, so nothing is lost.

// maxCatchUp bounds the slots a late clock sends at once, and maxBehind how
// far behind it may fall before it gives up the missed slots: a goroutine
// starved for a moment catches up (the byte rate holds), one starved for
// long does not then flood the link.
const (
	maxCatchUp = 32
	maxBehind  = 250 * time.Millisecond
)

// slotBuffers is how many slot buffers a session keeps: the clock builds the
// next slot in one while the link's writer may still be copying the last.
const slotBuffers = 2

// pacer is the queue and the slot builder of one shaped session. The
// session's clock goroutine (runPacer) is the only one that takes from it.
// A slot costs the clock one lock of the queue and no allocation: it is
// built in one of the session's buffers, which the link hands back (Done)
// once its writer has copied the frame.
type pacer struct {
	interval time.Duration
	frameLen int
	limit    int // messages the queue holds

	mu    sync.Mutex
	queue [][]byte // messages waiting, oldest first

	// The clock's own: the messages of the slot being sent, kept until
	// the link took it.
	taken [][]byte
	// bufs never change after newPacer; inUse[i] is set by the clock when
	// it builds a slot in bufs[i] and cleared by done when the link lets
	// the frame go.
	bufs  [slotBuffers][]byte
	inUse [slotBuffers]atomic.Bool
	done  func([]byte) // p.release, made once: the slots' link.Frame.Done

	slots, covers, carried atomic.Uint64
}

// offerResult says what offer did with a message.
type offerResult uint8

const (
	offerQueued offerResult = iota
	offerFull               // the queue is full; try again later
	offerTooBig             // it cannot fit in a slot; dropped
)

func newPacer(interval time.Duration, frameLen, limit int) *pacer {
	p := &pacer{interval: interval, frameLen: frameLen, limit: limit}
	for i := range p.bufs {
		p.bufs[i] = make([]byte, 0, frameLen)
	}
	p.done = p.release
	return p
}

// buffer returns an empty buffer for the next slot: one of the session's
// that the link has let go, or, when the clock catches up faster than the
// link's writer copies, a new one.
func (p *pacer) buffer() []byte {
	for i := range p.bufs {
		if !p.inUse[i].Load() {
			p.inUse[i].Store(true)
			return p.bufs[i][:0]
		}
	}
	return make([]byte, 0, p.frameLen)
}

// release hands back the buffer of frame, once nothing reads it any more.
// Any goroutine may call it; a frame not in a session buffer is left to
// the garbage collector.
func (p *pacer) release(frame []byte) {
	if cap(frame) == 0 {
		return
	}
	for i := range p.bufs {
		if &frame[:1][0] == &p.bufs[i][:1][0] {
			p.inUse[i].Store(false)
			return
		}
	}
}

// offer queues one message (gatewire wire form) for the next slots. It
// refuses one that cannot fit in a slot (a packet larger than the client
// said it takes): sending it would need a longer frame, which would mark
// this client's downstream.
func (p *pacer) offer(msg []byte) offerResult {
	if gatewire.SlotCost(len(msg)) > gatewire.SlotRoom(p.frameLen) {
		return offerTooBig
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.queue) >= p.limit {
		return offerFull
	}
	p.queue = append(p.queue, msg)
	return offerQueued
}

// slot builds the next frame from the waiting messages that fit it and
// hands it to write, with how many messages it carries and their bytes.
// write owns the frame: it hands it to the link with p.done as its Done,
// or refuses it (false). The messages come back to the head of the queue
// if write refused the frame, so a full link queue delays them and loses
// nothing. Only the clock calls it.
func (p *pacer) slot(write func(frame []byte, n, bytes int) bool) bool {
	frame, n, bytes := p.take()
	if write(frame, n, bytes) {
		clear(p.taken)
		p.taken = p.taken[:0]
		p.slots.Add(1)
		if n == 0 {
			p.covers.Add(1)
		}
		p.carried.Add(uint64(n))
		return true
	}
	// A link that refused the frame has already let it go (Done); a write
	// that refused it before the link did not: this covers both, and no
	// other slot can have taken the buffer since.
	p.release(frame)
	if n > 0 {
		p.mu.Lock()
		p.queue = slices.Insert(p.queue, 0, p.taken...)
		p.mu.Unlock()
		clear(p.taken)
		p.taken = p.taken[:0]
	}
	return false
}

// take builds the next slot, under the one lock of the queue a slot costs,
// and moves the messages it carries to p.taken. Meanwhile the queue may
// take up to that many more messages than its limit, until write answers.
//
// It packs first-fit: the head of the queue always goes (offer refused what
// never fits an empty slot), then every later message that fits the room
// left, in queue order; the others keep theirs. Stopping at the first
// message that did not fit cost a download at anonymous-plus a slot per
// one or two acks: its ~200 acks/s sat between 8 KiB replies, and each
// 8.2 KB slot carried ~2.6 KB of data on average (bench row (p), the
// gateway's slot counters). Order within a client's downstream carries no
// meaning: the mixnet reorders packets anyway.
func (p *pacer) take() (frame []byte, n, bytes int) {
	buf := p.buffer()
	p.mu.Lock()
	defer p.mu.Unlock()
	room := gatewire.SlotRoom(p.frameLen)
	minCost := gatewire.SlotCost(0)
	keep, i := 0, 0
	for ; i < len(p.queue) && room >= minCost; i++ {
		m := p.queue[i]
		if c := gatewire.SlotCost(len(m)); c <= room {
			room -= c
			bytes += len(m)
			p.taken = append(p.taken, m)
			continue
		}
		p.queue[keep] = m
		keep++
	}
	// Shift rather than reslice, so the queue's array (a few hundred
	// bytes: limit slice headers) serves every slot and offer allocates
	// nothing.
	keep += copy(p.queue[keep:], p.queue[i:])
	clear(p.queue[keep:])
	p.queue = p.queue[:keep]
	n = len(p.taken)
	frame, _ = gatewire.AppendSlot(buf, p.frameLen, p.taken...)
	return frame, n, bytes
}

// grantShape answers a client's Shape: it starts s's pacer at the asked
// interval, or at the longer one the gateway's MaxDownstreamBytes allows,
// and tells the client what it got. A session is shaped once; a later Shape
// only hears the grant again. Runs on s's reader goroutine.
func (g *Gateway) grantShape(s *session, m *gatewire.Shape) {
	grant := gatewire.Shape{}
	if p := s.pacer.Load(); p != nil {
		grant = gatewire.Shape{Interval: p.interval, FrameLen: p.frameLen}
	} else if m.Interval > 0 && g.cfg.MaxDownstreamBytes > 0 {
		// The cap is in bytes per second: one slot of FrameLen bytes per
		// interval.
		least := time.Duration(float64(m.FrameLen) / float64(g.cfg.MaxDownstreamBytes) * float64(time.Second))
		grant = gatewire.Shape{Interval: max(m.Interval, least).Round(time.Microsecond), FrameLen: m.FrameLen}
		p := newPacer(grant.Interval, grant.FrameLen, g.cfg.DownstreamQueue)
		// The grant is the first thing the shaped stream carries.
		p.offer(grant.AppendBinary(nil))
		s.pacer.Store(p)
		g.metrics.shapedSessions.Inc()
		g.wg.Add(1)
		go g.runPacer(s, p)
		return
	}
	g.toClient(s.client, s.c, grant.AppendBinary(nil))
}

// runPacer is a shaped session's clock: one slot per interval until the
// connection ends or the gateway stops.
func (g *Gateway) runPacer(s *session, p *pacer) {
	defer g.wg.Done()
	t := time.NewTimer(0)
	defer t.Stop()
	next := time.Now()
	for {
		select {
		case <-t.C:
		case <-s.c.Done():
			return
		case <-g.serveCtx.Done():
			return
		}
		now := time.Now()
		for i := 0; i < maxCatchUp && !next.After(now); i++ {
			g.sendSlot(s, p)
			next = next.Add(p.interval)
		}
		if now.Sub(next) > maxBehind {
			next = now
		}
		t.Reset(time.Until(next))
	}
}

// sendSlot sends one slot of s's stream. Deliveries in it were paid when
// they arrived; the padding, and a cover slot, are paid here, as any byte
// to the client is. An unpaid client gets no cover: it is being asked for a
// ticket, and its link closes if none comes.
func (g *Gateway) sendSlot(s *session, p *pacer) {
	cl := s.client
	var n, bytes int
	if !p.slot(func(frame []byte, nMsgs, nBytes int) bool {
		n, bytes = nMsgs, nBytes
		if cl.meter.metered && !g.charge(cl, s.c, p.frameLen-bytes) && n == 0 {
			return false
		}
		return g.sendFrame(s.c, frame, n == 0, p.done)
	}) {
		return
	}
	cl.bytesOut.Add(uint64(p.frameLen - bytes))
	g.metrics.bytesOut.Add(float64(p.frameLen - bytes))
	g.metrics.shapedSlots.Inc()
	if n == 0 {
		g.metrics.shapedCover.Inc()
		return
	}
	s.nudge() // the drainer may have room in the queue now
}

// toClient queues one message for cl on its connection c: in the
// session's next slots when its downstream is shaped, on the link
// otherwise. Every message to a client goes this way. cl, when known, is
// counted the bytes.
func (g *Gateway) toClient(cl *client, c *link.Conn, msg []byte) bool {
	var ok bool
	if p := g.pacerOf(c); p != nil {
		switch p.offer(msg) {
		case offerQueued:
			ok = true
		case offerTooBig:
			// Taken, as far as the caller knows: it must not store it
			// and try again.
			g.metrics.drop(dropOversize)
			return true
		}
	} else {
		ok = g.sendFrame(c, msg, false, nil)
	}
	if ok && cl != nil {
		cl.bytesOut.Add(uint64(len(msg)))
		g.metrics.bytesOut.Add(float64(len(msg)))
	}
	return ok
}

// pacerOf returns the pacer of c's session, nil if it is not shaped.
func (g *Gateway) pacerOf(c *link.Conn) *pacer {
	if v, ok := g.sessions.Load(c); ok {
		return v.(*session).pacer.Load()
	}
	return nil
}
