package gateway

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/nym-go/nym/anonymity"
	"github.com/nym-go/nym/mixnet/gatewire"
	"github.com/nym-go/nym/mixnet/link"
	"github.com/nym-go/nym/mixnet/sphinx"
)

// closeGrace is how long a refused or replaced connection stays open after
// its last Status is queued, so the writer can put it on the wire: closing
// a link drops whatever is still queued.
const closeGrace = 500 * time.Millisecond

// seqBlock is how many Seq numbers one durable reservation covers, so live
// delivery writes the counter to disk only once per seqBlock/2 packets.
const seqBlock = 1 << 16

// client is what the gateway knows about one client identity. It outlives
// connections: it holds the numbering, the stored-message accounting and
// the byte counters.
type client struct {
	addr [sphinx.AddressSize]byte
	// recorded is false for a client that has not yet stayed connected
	// for RecordClientsAfter, or that did when MaxStoredClients were
	// already recorded: it never reaches the database and is forgotten when
	// it disconnects. It changes only from false to true, with both
	// Gateway.mu and mu held (recordLocked).
	recorded bool
	// provisional is set for a client recorded before it showed life,
	// while MaxProvisionalClients allowed; it is cleared once the client
	// stays RecordClientsAfter. Changes with Gateway.mu and mu held.
	provisional bool
	// limit is the client's token bucket for packets into the mixnet. It
	// lives as long as the client object, so reconnecting does not refill
	// it.
	limit *rate.Limiter

	mu sync.Mutex
	// removed is set, with Gateway.mu held too, when the client is taken
	// out of Gateway.clients. Nothing may be queued for it after that: its
	// database record is being deleted, and a returning client gets a new
	// object.
	removed bool
	// conn and sess change only with both Gateway.mu and mu held.
	conn *link.Conn
	sess *session
	live bool // deliveries go straight to conn; false while stored ones drain

	nextSeq        uint64
	reserved       uint64 // durable: every Seq handed out is below it
	reservePending bool
	reserveQueued  uint64 // highest Reserved in any meta op queued so far
	queued         int    // ops of any kind queued, not yet committed
	lastSeen       int64  // Unix ns: last connected, disconnected or stored for

	storedCount int   // records committed or queued
	storedBytes int64 // their size, which MaxStoredBytes bounds
	storedHigh  uint64
	pending     int    // store ops queued, not yet committed
	commits     uint64 // store ops finished; the drainer watches it
	confirmed   uint64 // highest Seq the client confirmed
	deleteUpTo  uint64 // highest Seq a delete was queued for
	sentHigh    uint64 // highest Seq sent on this connection; caps confirmed
	dropped     uint64 // refused for lack of room; not yet told

	bytesIn, bytesOut, forwarded, delivered atomic.Uint64

	meter meter // the ticket account, when tickets are required
}

// session is one connection of a client.
type session struct {
	c      *link.Conn
	client *client
	bad    int // malformed messages; reader goroutine only
	// unbilled is what the client sent on this connection and was not yet
	// taken from its ticket account (chargeUp); reader goroutine only.
	unbilled int64
	closing  atomic.Bool // kicked or replaced: ignore what it sends
	wake     chan struct{}
	// since is when the connection was registered (Unix ns); toRecord is
	// set while the client is not recorded and may become so once the
	// connection is RecordClientsAfter old.
	since    int64
	toRecord atomic.Bool
	// src is the connection's source address and srcLimit the token
	// bucket it shares with the other clients from there.
	src      netip.Prefix
	srcLimit *rate.Limiter
	// pacer is set once the client asks for a shaped downstream
	// (grantShape); from then on everything for it goes through it.
	pacer atomic.Pointer[pacer]
}

func (s *session) nudge() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// wakeLocked nudges the current connection's drainer, if any.
func (cl *client) wakeLocked() {
	if cl.sess != nil {
		cl.sess.nudge()
	}
}

// shortID names a client in logs without writing out its whole key.
func shortID(addr [32]byte) string { return hex.EncodeToString(addr[:6]) }

// lookup returns the client with this address, or nil if it never connected.
func (g *Gateway) lookup(addr [32]byte) *client {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.clients[addr]
}

// newClientLocked registers a client on its first connection (or its first
// since it was forgotten). g.mu is held. Numbering starts at the sequence
// floor, above every Seq a forgotten client was ever given. The client is
// recorded at once if RecordClientsAfter is negative, provisionally while
// fewer than MaxProvisionalClients are, and otherwise only once it shows
// life (recordIfDue).
func (g *Gateway) newClientLocked(addr [32]byte) *client {
	next := max(g.seqFloor, 1)
	cl := &client{
		addr:     addr,
		limit:    g.newLimiter(),
		nextSeq:  next,
		reserved: next,
		lastSeen: g.now().UnixNano(),
	}
	cl.meter.metered = g.meters(addr)
	g.clients[addr] = cl
	cl.mu.Lock()
	switch {
	case cl.meter.metered:
		// Recorded once it pays (payLocked), never before.
	case g.cfg.RecordClientsAfter < 0:
		g.recordLocked(cl, false)
	case g.provisional < g.cfg.MaxProvisionalClients:
		g.recordLocked(cl, true)
	}
	cl.mu.Unlock()
	return cl
}

// recordLocked records cl in the database, provisionally or not, if
// MaxStoredClients allows. g.mu and cl.mu are held.
func (g *Gateway) recordLocked(cl *client, provisional bool) {
	if cl.recorded || cl.removed {
		return
	}
	if g.recorded >= g.cfg.MaxStoredClients {
		// Over the cap: serve it, but keep nothing of it, so a flood of
		// fresh identities cannot grow the database.
		g.metrics.clientsNotKept.Inc()
		g.log.Debug("client not recorded: MaxStoredClients reached", "client", shortID(cl.addr), "max", g.cfg.MaxStoredClients)
		return
	}
	cl.recorded, cl.provisional = true, provisional
	g.recorded++
	g.metrics.clientsRecorded.Set(float64(g.recorded))
	if provisional {
		g.provisional++
		g.metrics.clientsProvisional.Set(float64(g.provisional))
	}
	g.reserveSeqsLocked(cl) // also makes the client known to a restarted gateway
}

// proveLocked marks a provisional client as one that showed life, on disk
// too. g.mu and cl.mu are held.
func (g *Gateway) proveLocked(cl *client) {
	if !cl.provisional || cl.removed {
		return
	}
	cl.provisional = false
	g.provisional--
	g.metrics.clientsProvisional.Set(float64(g.provisional))
	g.touchLocked(cl) // its meta op deletes the marker
}

// recordIfDue records s's client, or confirms its provisional record, once
// s has been connected for RecordClientsAfter: a client that has shown life
// by staying. Identities cost nothing to make, so recording each at its
// handshake would let anyone fill MaxStoredClients, and the database, with
// throwaway ones; they can hold no more than MaxProvisionalClients
// provisional records. When final, the connection is ending and this is
// the last chance. Neither lock is held.
func (g *Gateway) recordIfDue(s *session, final bool) {
	if !s.toRecord.Load() || time.Duration(g.now().UnixNano()-s.since) < g.cfg.RecordClientsAfter {
		return
	}
	if s.client.meter.metered && !s.client.meter.paid.Load() {
		return // only a client that paid is worth a record
	}
	g.mu.Lock()
	cl := s.client
	cl.mu.Lock()
	if s.toRecord.Swap(false) && (cl.sess == s || final) {
		g.recordLocked(cl, false)
		g.proveLocked(cl)
	}
	cl.mu.Unlock()
	g.mu.Unlock()
}

// newLimiter is a client's token bucket, full to start with. It is always
// asked with the gateway's clock (Config.Now).
func (g *Gateway) newLimiter() *rate.Limiter {
	return rate.NewLimiter(rate.Limit(g.cfg.ClientRate), g.cfg.ClientBurst)
}

// forgetLocked takes cl out of the gateway's memory: a later connection
// from its identity registers afresh. Numbering stays unique because the
// floor is raised above every Seq cl was given. g.mu and cl.mu are held;
// the caller deletes any database record.
func (g *Gateway) forgetLocked(cl *client) {
	cl.removed = true
	delete(g.clients, cl.addr)
	g.seqFloor = max(g.seqFloor, cl.nextSeq)
	if cl.recorded {
		g.recorded--
		g.metrics.clientsRecorded.Set(float64(g.recorded))
	}
	if cl.provisional {
		g.provisional--
		g.metrics.clientsProvisional.Set(float64(g.provisional))
	}
}

// issueSeqLocked hands out the client's next Seq. It never waits for the
// disk: when half the durable reservation is used it queues a larger one.
// Only a crash while that write is still queued behind seqBlock/2
// deliveries could let a restarted gateway repeat a number.
func (g *Gateway) issueSeqLocked(cl *client) uint64 {
	seq := cl.nextSeq
	cl.nextSeq++
	if cl.reserved < cl.nextSeq+seqBlock/2 {
		g.reserveSeqsLocked(cl)
	}
	return seq
}

func (g *Gateway) reserveSeqsLocked(cl *client) {
	if cl.reservePending || !cl.recorded || cl.removed {
		return
	}
	// Never below a Reserved already queued: meta ops commit in queue
	// order, and the last one written is what a restart resumes from.
	target := max(cl.nextSeq+seqBlock, cl.reserveQueued)
	op := &writeOp{kind: opMeta, reserve: true, provisional: cl.provisional, client: cl, seq: target, value: cl.metaLocked(target).value()}
	if g.enqueueLocked(op) {
		cl.reservePending = true
		cl.reserveQueued = target
	}
}

// metaLocked is the client's meta with this Reserved. cl.mu is held.
func (cl *client) metaLocked(reserved uint64) clientMeta {
	return clientMeta{Reserved: reserved, Dropped: cl.dropped, LastSeen: cl.lastSeen}
}

// touchLocked queues a write of the client's meta, so its last-seen time
// (and drop count) survive a crash. It keeps Reserved at least where any
// queued reservation put it. Best effort: if the queue is full, the next
// meta write or Close records it. cl.mu is held.
func (g *Gateway) touchLocked(cl *client) {
	if !cl.recorded || cl.removed {
		return
	}
	reserved := max(cl.reserveQueued, cl.reserved, cl.nextSeq)
	if g.enqueueLocked(&writeOp{kind: opMeta, provisional: cl.provisional, client: cl, seq: reserved, value: cl.metaLocked(reserved).value()}) {
		cl.reserveQueued = reserved
	}
}

// onConn runs for every authenticated connection, before its first frame is
// read. It must not block.
func (g *Gateway) onConn(c *link.Conn) {
	addr := c.RemoteStatic()
	g.mu.Lock()
	cl := g.clients[addr]
	replacing := cl != nil && cl.conn != nil
	if !replacing && g.connected >= g.cfg.MaxClients {
		g.mu.Unlock()
		g.metrics.clientsRefused.Inc()
		g.log.Debug("gateway full: client refused", "client", shortID(addr), "remote", c.RemoteAddr().String())
		g.sendStatus(nil, c, gatewire.StatusRefused, "gateway full")
		g.closeLater(c, closeGrace)
		return
	}
	fresh := cl == nil
	if fresh {
		cl = g.newClientLocked(addr)
	}
	s := &session{c: c, client: cl, wake: make(chan struct{}, 1), since: g.now().UnixNano(), src: link.SourceOf(c.RemoteAddr())}
	s.srcLimit = g.sources.acquire(s.src)
	g.sessions.Store(c, s)

	cl.mu.Lock()
	s.toRecord.Store(!cl.recorded || cl.provisional)
	old := cl.sess
	cl.conn, cl.sess = c, s
	cl.sentHigh = cl.confirmed
	drainFrom := cl.confirmed
	dropped := cl.dropped
	cl.dropped = 0
	cl.lastSeen = g.now().UnixNano()
	if !fresh {
		g.touchLocked(cl) // a fresh client's reservation already holds it
	}
	// Anything stored, or on its way to the store, goes out before live
	// traffic, so the client sees one ordered stream.
	needDrain := cl.storedCount > 0 || cl.pending > 0
	cl.live = !needDrain
	cl.mu.Unlock()
	if old == nil {
		g.connected++
		g.metrics.clientsConnected.Set(float64(g.connected))
	}
	g.mu.Unlock()

	g.log.Debug("client connected", "client", shortID(addr), "remote", c.RemoteAddr().String(), "replacing", old != nil)
	if old != nil {
		old.closing.Store(true)
		g.sendStatus(cl, old.c, gatewire.StatusRefused, "replaced by a newer connection from the same client")
		g.closeLater(old.c, closeGrace)
	}
	if dropped > 0 {
		g.sendStatus(cl, c, gatewire.StatusRefused, fmt.Sprintf(
			"%d messages for you were dropped while you were offline: stored-message limit reached (%d bytes for you, or the gateway's total)",
			dropped, g.cfg.MaxStoredBytes))
	}
	g.greet(cl, c)
	if needDrain {
		g.wg.Add(1)
		go g.drain(s, drainFrom)
	}
}

// onClose runs once a connection has ended. It must not block.
func (g *Gateway) onClose(c *link.Conn, err error) {
	v, ok := g.sessions.LoadAndDelete(c)
	if !ok {
		return // refused before it was registered
	}
	s := v.(*session)
	cl := s.client
	g.billRest(s)
	g.sources.release(s.src)
	g.recordIfDue(s, true)
	g.mu.Lock()
	cl.mu.Lock()
	if cl.sess == s {
		cl.conn, cl.sess, cl.live = nil, nil, false
		g.connected--
		g.metrics.clientsConnected.Set(float64(g.connected))
		cl.lastSeen = g.now().UnixNano()
		if cl.recorded {
			g.touchLocked(cl)
		} else {
			// Nothing of it was stored, or ever will be: it has no reason
			// to stay in memory.
			g.forgetLocked(cl)
		}
	}
	cl.mu.Unlock()
	g.mu.Unlock()
	s.nudge()
	g.log.Debug("client disconnected", "client", shortID(cl.addr), "reason", err)
}

// handleFrame is the link Handler for client connections; it runs on the
// connection's reader goroutine.
func (g *Gateway) handleFrame(c *link.Conn, f link.Frame) error {
	v, ok := g.sessions.Load(c)
	if !ok {
		return nil // refused: waiting for its Status to go out before closing
	}
	s := v.(*session)
	if s.closing.Load() {
		return nil
	}
	cl := s.client
	if g.cfg.Trace != nil {
		g.traceFrame(cl.addr, anonymity.In, 0, f.Payload, false)
	}
	cl.bytesIn.Add(uint64(len(f.Payload)))
	g.metrics.bytesIn.Add(float64(len(f.Payload)))
	g.recordIfDue(s, false)
	if f.Kind != link.KindClient {
		g.metrics.ignoredFrames.Inc()
		return nil
	}
	msg, err := gatewire.Parse(f.Payload)
	if err != nil {
		g.badMessage(s, err)
		return nil
	}
	switch m := msg.(type) {
	case *gatewire.Send:
		if cl.meter.metered && !g.chargeUp(s, len(f.Payload)) {
			g.metrics.drop(dropNoTicket)
			return nil
		}
		// Over its rate, or its address's: drop here, so one client's
		// flood cannot crowd everybody else out of the first mix layer.
		now := g.now()
		if !cl.limit.AllowN(now, 1) {
			g.metrics.drop(dropRateLimited)
			return nil
		}
		if !s.srcLimit.AllowN(now, 1) {
			g.metrics.drop(dropSourceRateLimited)
			return nil
		}
		// f.Payload is ours, so Forward may own the packet inside it.
		if g.cfg.Forward(m.FirstHop, m.Packet, m.Parity == 1) {
			cl.forwarded.Add(1)
			g.metrics.forwarded.Inc()
		} else {
			g.metrics.drop(dropForwardRefused)
		}
	case *gatewire.Received:
		g.confirm(s, m.Seq)
	case *gatewire.Ticket:
		g.handleTicket(s, m)
	case *gatewire.Shape:
		g.grantShape(s, m)
	default:
		g.badMessage(s, fmt.Errorf("message type %d only travels to clients", f.Payload[0]))
	}
	return nil
}

// errTooManyBad is the text a client gets when it is disconnected for
// sending garbage.
var errTooManyBad = errors.New("too many malformed messages; disconnecting")

// badMessage answers a malformed message, and disconnects a client that
// sends more than MaxBadMessages of them.
func (g *Gateway) badMessage(s *session, err error) {
	g.metrics.badMessages.Inc()
	s.bad++
	if s.bad > g.cfg.MaxBadMessages {
		g.kick(s)
		return
	}
	g.sendStatus(s.client, s.c, gatewire.StatusBadMessage, err.Error())
}

// confirm handles Received: stored messages up to seq may be deleted.
func (g *Gateway) confirm(s *session, seq uint64) {
	cl := s.client
	cl.mu.Lock()
	if cl.sess == s {
		// A client cannot confirm what it was never sent.
		seq = min(seq, cl.sentHigh)
		if seq > cl.confirmed {
			cl.confirmed = seq
		}
		if cl.storedCount > 0 && cl.deleteUpTo < cl.storedHigh && cl.confirmed > cl.deleteUpTo {
			if g.enqueueLocked(&writeOp{kind: opDelete, client: cl, seq: cl.confirmed}) {
				cl.deleteUpTo = cl.confirmed
			}
		}
	}
	cl.mu.Unlock()
	s.nudge() // the drainer may have room in its window now
}

// sendStatus queues a Status for c. cl, when known, is charged the bytes.
func (g *Gateway) sendStatus(cl *client, c *link.Conn, code uint8, text string) {
	g.toClient(cl, c, (&gatewire.Status{Code: code, Text: text}).AppendBinary(nil))
}

// closeLater closes c after grace, or sooner if it ends or the gateway
// stops. Handlers and OnConn cannot close a connection themselves.
func (g *Gateway) closeLater(c *link.Conn, grace time.Duration) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-t.C:
		case <-c.Done():
		case <-g.serveCtx.Done():
		}
		c.Close()
	}()
}

// ClientStats is what the gateway counted for one client since it started.
type ClientStats struct {
	Identity  [sphinx.AddressSize]byte
	Connected bool
	// BytesIn and BytesOut are client-protocol bytes (frame payloads)
	// received from and queued for the client.
	BytesIn, BytesOut uint64
	// Forwarded counts the client's packets handed to their first hop;
	// Delivered counts packets sent to it, live or from the store.
	Forwarded, Delivered uint64
	// StoredMessages and StoredBytes are waiting for the client (or its
	// confirmation); Dropped were refused for lack of room and not yet
	// reported to it.
	StoredMessages int
	StoredBytes    int64
	Dropped        uint64
	// TicketBytes is what is left of the client's tickets, when tickets
	// are required, and Unpaid counts its packets (both ways) refused for
	// want of them.
	TicketBytes int64
	Unpaid      uint64
}

func (cl *client) stats() ClientStats {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return ClientStats{
		Identity:       cl.addr,
		Connected:      cl.conn != nil,
		BytesIn:        cl.bytesIn.Load(),
		BytesOut:       cl.bytesOut.Load(),
		Forwarded:      cl.forwarded.Load(),
		Delivered:      cl.delivered.Load(),
		StoredMessages: cl.storedCount,
		StoredBytes:    cl.storedBytes,
		Dropped:        cl.dropped,
		TicketBytes:    max(cl.meter.left.Load(), 0),
		Unpaid:         cl.meter.refused.Load(),
	}
}

// Client returns the counters of the client with this identity, and false if
// it never connected.
func (g *Gateway) Client(id [sphinx.AddressSize]byte) (ClientStats, bool) {
	cl := g.lookup(id)
	if cl == nil {
		return ClientStats{}, false
	}
	return cl.stats(), true
}

// Clients returns the counters of every client the gateway knows, in no
// particular order.
func (g *Gateway) Clients() []ClientStats {
	g.mu.RLock()
	all := make([]*client, 0, len(g.clients))
	for _, cl := range g.clients {
		all = append(all, cl)
	}
	g.mu.RUnlock()
	out := make([]ClientStats, len(all))
	for i, cl := range all {
		out[i] = cl.stats()
	}
	return out
}
