package vpn

import (
	"fmt"
	"sync"
	"time"

	"github.com/nym-go/nym/codel"
	"github.com/nym-go/nym/ipr"
	"github.com/nym-go/nym/mixnet/client"
	"github.com/nym-go/nym/tun"
)

// upstream is the tunnel's send side: the CoDel queue the packets read from
// the TUN wait in, and the source the mixnet client pulls DataUp messages
// from when it has a slot for one. One clock (the client's Poisson stream)
// pulls from one queue: nothing else in the tunnel paces or holds upstream
// packets, so a packet's sojourn in the queue is its whole wait for a slot
// and CoDel sees all of it.
//
// The packets sit in the TUN read buffers they were read into: readTUN
// swaps a free buffer into the batch slot of each packet it queues, and a
// buffer goes back to the free list when its packet is packed into a DataUp
// or dropped. The one copy upstream of the Sphinx layer is the packing.
type upstream struct {
	t   *Tunnel // its budget, logger and counters
	now func() time.Time

	mu      sync.Mutex
	q       *codel.FQ
	free    [][]byte // read buffers back from the queue, for readTUN
	maxFree int      // the most kept: one read batch's worth
	enc     ipr.BundleEncoder
	bigTurn bool   // the last DataUp was SURBs alone, past a head too big to leave room for one
	seq     uint64 // the next DataUp's
	stream  waker  // the open stream; nil between sessions
	// Capacities of the current mixnet client: a tagged packet without
	// SURBs, and what each SURB takes of it.
	capNone, surbSize int
	mix               Mixnet // the current mixnet client, for its counters
}

func newUpstream(t *Tunnel) (*upstream, error) {
	u := &upstream{t: t, now: time.Now}
	// Flow queueing: a DNS query or an interactive flow's packet does not
	// wait behind the ACKs and uploads of a bulk flow (codel.FQ).
	q, err := codel.NewFQ(codel.FQConfig{Config: codel.Config{
		Target:     t.cfg.QueueTarget,
		Interval:   t.cfg.QueueInterval,
		MaxPackets: t.cfg.MaxQueuePackets,
		MaxBytes:   t.cfg.MaxQueueBytes,
		// One DataUp carries up to one full-MTU packet's bytes: no
		// more than that behind the head, and the next slot can take
		// it all, so it is no standing queue.
		MaxPacket: t.mtu,
		Release:   u.putBuf,
	}})
	if err != nil {
		return nil, fmt.Errorf("vpn: upstream queue: %w", err)
	}
	u.q = q
	return u, nil
}

// payload is the packet a Pull fills: *client.Payload.
type payload interface {
	SetSURBs(n int) (room int, err error)
	Buf() []byte
	SetData(b []byte) error
}

// waker is the open mixnet stream, as the TUN reader and the receive loop
// see it: *client.Stream.
type waker interface{ Wake() }

// minFreeBufs is the fewest idle read buffers kept (each is
// tun.MaxPacketSize); a device that reads larger batches keeps a batch's
// worth, so that a burst of reads allocates nothing.
const minFreeBufs = 16

// Pull is client.Source's: the mixnet client has a slot for one DataUp,
// and p is the packet's buffer. The client calls it only for a slot (at
// most one DataUp is built ahead of its slot), so a packet waits here, in
// the CoDel queue, until the moment it can go.
//
// While the exit needs SURBs a bundle leaves room for at least one, and
// SURBs fill what the queue leaves spare; a head packet too big for that
// gets the next slot to itself after a SURB-only DataUp (once the exit
// lacks a full one's worth), so neither the SURB supply nor the upload
// stalls. Every DataUp carries our sender tag,
// which names the session at the exit, but a full one no SURB: that is what
// lets a bundle hold an IP packet of the tunnel's MTU (maxUpPacket).
func (u *upstream) Pull(p *client.Payload) bool { return u.fill(p) }

// fill is Pull on the payload interface, which tests can play.
func (u *upstream) fill(p payload) bool {
	now := u.now()
	u.mu.Lock()
	defer u.mu.Unlock()
	n, ok := u.plan(u.t.budget.need(now))
	if !ok {
		return false
	}
	if _, err := p.SetSURBs(n); err != nil {
		// Our count of what fits disagrees with the client's: send the
		// data without SURBs rather than nothing.
		u.t.log.Debug("vpn: SURBs do not fit a DataUp", "surbs", n, "err", err)
		if n = 0; u.q.Len() == 0 {
			return false
		}
		if _, err := p.SetSURBs(0); err != nil {
			return false
		}
	}
	buf, _ := (&ipr.DataUp{Seq: u.seq}).AppendBinary(p.Buf())
	u.enc.ResetInPlace(buf)
	var bytes int
	for {
		pkt, _, ok := u.q.PopIf(now, u.enc.Fits)
		if !ok {
			break
		}
		if err := u.enc.Add(pkt); err != nil { // Fits said yes: cannot happen
			u.t.tooBig.Add(1)
		} else {
			bytes += len(pkt)
		}
		u.putBuf(pkt)
	}
	err, packets := p.SetData(u.enc.Bytes()), u.enc.Packets()
	u.enc.Reset(nil) // let go of the client's buffer
	if err != nil {
		u.t.log.Warn("vpn: DataUp not written in place", "err", err)
		return false
	}
	u.seq++
	u.t.budget.gave(n)
	u.t.bundlesUp.Add(1)
	switch {
	case n > 0 && packets == 0:
		u.t.surbOnlyUp.Add(1)
	case n > 0:
		u.t.mixedUp.Add(1)
	}
	u.t.packetsUp.Add(uint64(packets))
	u.t.bytesUp.Add(uint64(bytes))
	u.t.lastSent.Store(now.UnixNano())
	return true
}

// plan decides what the next DataUp carries: how many SURBs, given what the
// exit lacks below its stock (deficit) and below its floor (urgent; see
// surbBudget), and whether there is anything to send at all. u.mu is held.
//
// Above the floor, SURBs cost the upload nothing: they fill the room the
// queued data leaves, or go alone when nothing is queued and a DataUp's
// worth is owed (fewer would spend a slot, and a Sphinx packet, on one or
// two). Below it, the exit needs them before our data: a bundle leaves room
// for at least one, and a head too big for that waits behind a SURB-only
// DataUp.
func (u *upstream) plan(deficit, urgent int) (nSURBs int, ok bool) {
	full := u.surbsFit(ipr.DataUpOverhead)
	surbsAlone := min(deficit, full)
	head, queued := u.q.Peek()
	switch {
	case !queued && (urgent > 0 || surbsAlone == full):
		return surbsAlone, surbsAlone > 0
	case !queued:
		return 0, false
	case deficit <= 0 || u.bigTurn:
		u.bigTurn = false
		return 0, true
	}
	// As many SURBs as the room the whole queue leaves.
	need := ipr.DataUpOverhead + u.q.Bytes() + ipr.LengthPrefixSize*u.q.Len()
	spare := min(deficit, u.surbsFit(need))
	if urgent <= 0 {
		return spare, true
	}
	n := max(spare, 1)
	if ipr.DataUpOverhead+ipr.LengthPrefixSize+len(head) > u.capNone-n*u.surbSize {
		// The head needs a bundle without SURBs. A SURB-only DataUp
		// before it costs the upload a slot, so it goes only once it
		// is full: an upload of full-size packets, whose ACKs spend a
		// SURB now and then, would otherwise give every other slot to
		// one SURB and halve itself.
		if surbsAlone < full {
			return 0, true
		}
		u.bigTurn = true
		return surbsAlone, true
	}
	return n, true
}

// surbsFit is how many SURBs fit beside a message of msgLen bytes.
func (u *upstream) surbsFit(msgLen int) int { return surbsBeside(u.capNone, u.surbSize, msgLen) }

// setMixnet takes the capacities of a (new) mixnet client.
func (u *upstream) setMixnet(mix Mixnet) {
	capNone := mix.RepliablePacketCapacity(0)
	u.mu.Lock()
	u.capNone, u.surbSize = capNone, capNone-mix.RepliablePacketCapacity(1)
	u.mix = mix
	u.mu.Unlock()
}

// slots returns the current mixnet client's real and cover packets sent,
// when it counts them (*client.Client does).
func (u *upstream) slots() (real, cover uint64) {
	u.mu.Lock()
	m, ok := u.mix.(interface{ Stats() client.Stats })
	u.mu.Unlock()
	if !ok {
		return 0, 0
	}
	st := m.Stats()
	return st.RealPacketsSent, st.CoverPacketsSent
}

// setStream makes s (nil: none) the stream that readTUN and the receive
// loop wake.
func (u *upstream) setStream(s waker) {
	u.mu.Lock()
	u.stream = s
	u.mu.Unlock()
}

// push queues the packets bufs[i][:sizes[i]] read at now, swapping a free
// buffer into each queued packet's slot, and wakes the stream. A size of
// zero or less is skipped: an empty packet would never fit a bundle (its
// length would read as the bundle's end) and wedge the queue's head.
func (u *upstream) push(bufs [][]byte, sizes []int, now time.Time) {
	u.mu.Lock()
	var pushed bool
	for i, b := range bufs {
		if sizes[i] <= 0 {
			continue
		}
		u.q.Push(b[:sizes[i]], now) // a refused packet's buffer comes back through putBuf
		bufs[i] = u.getBuf()
		pushed = true
	}
	s := u.stream
	u.mu.Unlock()
	if pushed && s != nil {
		s.Wake()
	}
}

// wakeIfShort wakes the stream when the exit needs SURBs that plan would
// send with nothing queued: a reply spent one, or the exit said it runs low.
func (u *upstream) wakeIfShort(now time.Time) {
	deficit, urgent := u.t.budget.need(now)
	u.mu.Lock()
	s, full := u.stream, u.surbsFit(ipr.DataUpOverhead)
	u.mu.Unlock()
	if s != nil && (urgent > 0 || deficit >= full && deficit > 0) {
		s.Wake()
	}
}

// getBuf returns a read buffer of tun.MaxPacketSize bytes. u.mu is held.
func (u *upstream) getBuf() []byte {
	if n := len(u.free); n > 0 {
		b := u.free[n-1]
		u.free[n-1] = nil
		u.free = u.free[:n-1]
		return b
	}
	return make([]byte, tun.MaxPacketSize)
}

// putBuf takes back the read buffer of a packet the queue let go: packed,
// dropped or refused. u.mu is held (the queue's Release runs inside it).
func (u *upstream) putBuf(pkt []byte) {
	if cap(pkt) < tun.MaxPacketSize || len(u.free) >= max(u.maxFree, minFreeBufs) {
		return
	}
	u.free = append(u.free, pkt[:tun.MaxPacketSize])
}

// getBufs fills bufs, readTUN's batch, with read buffers.
func (u *upstream) getBufs(bufs [][]byte) {
	u.mu.Lock()
	u.maxFree = len(bufs)
	for i := range bufs {
		bufs[i] = u.getBuf()
	}
	u.mu.Unlock()
}

// drops returns the queue's discard counters and the packets it holds.
func (u *upstream) drops() (codel.Stats, int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.q.Stats(), u.q.Len()
}
