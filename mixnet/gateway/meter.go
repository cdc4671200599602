package gateway

import (
	"sync/atomic"

	"github.com/nym-go/nym/mixnet/gatewire"
	"github.com/nym-go/nym/mixnet/link"
)

// meter is a client's ticket account at this gateway, when tickets are
// required. Every byte the client sends into the mixnet and every byte
// delivered or stored for it is taken from left; a ticket adds its quota.
// The account lives as long as the client object (a reconnection keeps it),
// and in memory only: a restarted gateway asks again.
type meter struct {
	// metered is set, at the client's creation, when tickets are required
	// and the client is not exempt.
	metered bool
	// left is the bytes the client may still move. It goes negative only
	// for the moment between a charge that overdraws it and its undo.
	left atomic.Int64
	// asked is set once the client was asked for its next ticket, so the
	// packet path asks once per quota, not once per packet.
	asked atomic.Bool
	// paid is set by the first ticket accepted: from then on the client
	// may be recorded (see recordIfDue).
	paid atomic.Bool
	// unpaidSince is when the client ran out (or connected without a
	// ticket), Unix ns; 0 while it has bytes left. The janitor closes a
	// connection that stays unpaid for the grace period.
	unpaidSince atomic.Int64
	// refused counts packets refused for want of bytes.
	refused atomic.Uint64
}

// deliverHeaderLen is what a Deliver message adds to its payload.
const deliverHeaderLen = gatewire.DeliverHeaderLen

// charge takes n bytes from cl's quota for traffic on c, and reports
// whether the client had them. It asks for the next ticket once fewer than
// a quarter of a ticket's bytes are left, and starts the grace clock when
// none are. One atomic add and a compare; the upstream path batches it
// (chargeUp).
func (g *Gateway) charge(cl *client, c *link.Conn, n int) bool {
	left := cl.meter.left.Add(-int64(n))
	if left < g.askBelow {
		if left+int64(n) <= 0 {
			// It had nothing: undo, so refused traffic costs nothing.
			cl.meter.left.Add(int64(n))
			cl.meter.refused.Add(1)
			cl.meter.unpaidSince.CompareAndSwap(0, g.now().UnixNano())
			g.askNext(cl, c, 0)
			return false
		}
		if left <= 0 {
			// Spent to the last byte: the grace clock runs from here, or
			// a client that then sends nothing metered would hold its slot.
			cl.meter.unpaidSince.CompareAndSwap(0, g.now().UnixNano())
		}
		g.askNext(cl, c, left)
	}
	return true
}

// upBatch bounds the bytes a connection's reader gathers before it takes
// them from the shared account: the upstream path then mostly reads the
// account rather than writing it. While gathering, the account must hold
// the batch and a quarter of a ticket besides, so nothing is sent unpaid.
const upBatch = 64 << 10

// chargeUp is charge for the client's own packets, on s's reader goroutine.
func (g *Gateway) chargeUp(s *session, n int) bool {
	s.unbilled += int64(n)
	if s.unbilled < upBatch && s.client.meter.left.Load()-s.unbilled >= g.askBelow {
		return true
	}
	due := s.unbilled
	s.unbilled = 0
	return g.charge(s.client, s.c, int(due))
}

// billRest takes what s gathered and did not bill from its client's
// account, once the connection has ended (its reader has stopped).
func (g *Gateway) billRest(s *session) {
	if s.unbilled > 0 {
		s.client.meter.left.Add(-s.unbilled)
		s.unbilled = 0
	}
}

// askNext sends the client a Quota with WantNext, once per ticket.
func (g *Gateway) askNext(cl *client, c *link.Conn, left int64) {
	if c == nil || !cl.meter.asked.CompareAndSwap(false, true) {
		return
	}
	g.sendQuota(cl, c, max(left, 0), true)
}

// sendQuota queues a Quota for c.
func (g *Gateway) sendQuota(cl *client, c *link.Conn, left int64, wantNext bool) {
	g.toClient(cl, c, (&gatewire.Quota{Left: uint64(left), WantNext: wantNext}).AppendBinary(nil))
}

// credit adds a ticket's quota to cl's account and tells the client over c
// how much it has now.
func (g *Gateway) credit(cl *client, c *link.Conn, quota int64) {
	left := cl.meter.left.Add(quota)
	cl.meter.asked.Store(false)
	cl.meter.unpaidSince.Store(0)
	cl.meter.paid.Store(true)
	g.metrics.ticketBytes.Add(float64(quota))
	g.sendQuota(cl, c, max(left, 0), left < g.askBelow)
	if left < g.askBelow {
		cl.meter.asked.Store(true)
	}
}

// debit takes back up to quota bytes from cl (a ticket found spent at
// another gateway too) and asks it for another ticket.
func (g *Gateway) debit(cl *client, quota int64) {
	for {
		old := cl.meter.left.Load()
		if cl.meter.left.CompareAndSwap(old, max(old-quota, 0)) {
			break
		}
	}
	cl.meter.asked.Store(false)
	cl.mu.Lock()
	c := cl.conn
	cl.mu.Unlock()
	if cl.meter.left.Load() <= 0 {
		cl.meter.unpaidSince.CompareAndSwap(0, g.now().UnixNano())
	}
	g.askNext(cl, c, cl.meter.left.Load())
}

// greet tells a newly connected client where its account stands: unmetered,
// or how many bytes are left and whether to show a ticket now. A client
// with nothing left starts its grace period afresh with each connection.
func (g *Gateway) greet(cl *client, c *link.Conn) {
	if !cl.meter.metered {
		g.toClient(cl, c, (&gatewire.Quota{Unmetered: true}).AppendBinary(nil))
		return
	}
	left := cl.meter.left.Load()
	if left <= 0 {
		cl.meter.unpaidSince.Store(g.now().UnixNano())
	}
	want := left < g.askBelow
	if want {
		cl.meter.asked.Store(true)
	}
	g.sendQuota(cl, c, max(left, 0), want)
}

// meters says whether a new client with this identity pays with tickets.
func (g *Gateway) meters(addr [32]byte) bool {
	tc := &g.cfg.Tickets
	return tc.Required && (tc.Exempt == nil || !tc.Exempt(addr))
}
