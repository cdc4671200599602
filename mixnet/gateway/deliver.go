package gateway

import (
	"bytes"
	"time"

	"github.com/nym-go/nym/mixnet/gatewire"
	"github.com/nym-go/nym/mixnet/sphinx"
)

// Drain flow control. Stored messages go out at most drainWindow ahead of the
// client's confirmations, so a long backlog cannot overflow the link queue.
// A client that does not confirm within drainStall gets the next window
// anyway: it is slow, not necessarily broken, and unconfirmed messages stay
// stored for its next connection.
const (
	defaultDrainWindow = 128
	defaultDrainStall  = 2 * time.Second
)

// Deliver handles a packet whose last hop is this node. The node calls it
// from its mixer workers, concurrently; it never waits for the disk or the
// network. It owns p's buffers, and may keep p.Payload.
func (g *Gateway) Deliver(p sphinx.Processed) {
	if g.closed.Load() {
		g.metrics.drop(dropClosed)
		return
	}
	// The SURB-ack tells the sender its packet arrived, so it goes out only
	// once the packet is accepted: a packet for an unknown client, or one
	// dropped for a full queue or store, gets none and is sent again.
	if handle := g.service(p.Destination.Address); handle != nil {
		g.sendAck(p.Payload) // before the handler, which owns the payload
		g.metrics.deliveredService.Inc()
		handle(p.Destination.ID, p.Payload)
		return
	}
	if g.deliverToClient(p.Destination, p.Payload) {
		g.sendAck(p.Payload) // only reads the payload
	}
}

// sendAck sends the SURB-ack at the front of a forward packet's payload back
// into the mixnet: that is how the sender learns its packet arrived. A
// payload that does not open is a SURB reply or an ack, sealed for the
// client, and carries no ack for us.
func (g *Gateway) sendAck(payload []byte) {
	msg, err := sphinx.OpenPayload(payload) // reads only; payload is left as is
	if err != nil {
		return
	}
	env, err := gatewire.ParseEnvelope(msg)
	if err != nil || !env.HasAck {
		return
	}
	// Forward owns its packet and may rewrite it (a mixer unwraps in place),
	// while the client still needs the whole payload: give it a copy.
	ack := bytes.Clone(env.Ack)
	if g.cfg.Forward(env.AckHop, ack, env.AckParity == 1) {
		g.metrics.acksSent.Inc()
	} else {
		g.metrics.drop(dropForwardRefused)
	}
}

// RegisterService routes every packet for addr to handler instead of to a
// client: the exit's IP packet router registers itself this way. handler
// gets the payload exactly as a client would (sphinx.OpenPayload then
// gatewire.ParseEnvelope recover the message) and owns it. It is called from
// the mixer workers, concurrently, so it must not block. A nil handler
// removes the service.
func (g *Gateway) RegisterService(addr [sphinx.AddressSize]byte, handler func(id [sphinx.IDSize]byte, payload []byte)) {
	g.servicesMu.Lock()
	defer g.servicesMu.Unlock()
	next := make(map[[sphinx.AddressSize]byte]func([sphinx.IDSize]byte, []byte))
	for a, h := range *g.services.Load() {
		next[a] = h
	}
	if handler == nil {
		delete(next, addr)
	} else {
		next[addr] = handler
	}
	g.services.Store(&next)
}

// service looks up a local service without taking a lock: the map is
// replaced, never changed, so the packet path only loads a pointer.
func (g *Gateway) service(addr [sphinx.AddressSize]byte) func([sphinx.IDSize]byte, []byte) {
	return (*g.services.Load())[addr]
}

// deliverToClient sends the payload to its client now if it is connected and
// caught up, and stores it otherwise.
func (g *Gateway) deliverToClient(dest sphinx.Destination, payload []byte) (accepted bool) {
	var cl *client
	for {
		if cl = g.lookup(dest.Address); cl == nil {
			g.metrics.drop(dropUnknownClient)
			return false
		}
		cl.mu.Lock()
		if !cl.removed {
			break
		}
		// Forgotten between the lookup and the lock: look again, for the
		// object of a client that has just reconnected, if any.
		cl.mu.Unlock()
	}
	defer cl.mu.Unlock()
	if !cl.live {
		return g.storeLocked(cl, 0, dest.ID, payload)
	}
	if cl.meter.metered && !g.charge(cl, cl.conn, deliverHeaderLen+len(payload)) {
		g.metrics.drop(dropNoTicket) // no ack: the sender sends it again
		return false
	}
	// Seq and Send under one lock: concurrent workers must not put a
	// higher Seq on the wire before a lower one.
	seq := g.issueSeqLocked(cl)
	frame := (&gatewire.Deliver{Seq: seq, ID: dest.ID, Payload: payload}).AppendBinary(nil)
	if g.toClient(cl, cl.conn, frame) {
		cl.sentHigh = seq
		cl.delivered.Add(1)
		g.metrics.deliveredLive.Inc()
		return true
	}
	if cl.conn.Err() == nil {
		if cl.sess.pacer.Load() != nil && cl.recorded {
			// A shaped downstream runs at its rate, not the client's: a
			// burst beyond its queue waits in the store, in order, and
			// the drainer feeds it back as slots free up.
			if !g.storeLocked(cl, seq, dest.ID, payload) {
				return false
			}
			cl.live = false
			g.wg.Add(1)
			go g.drain(cl.sess, cl.sentHigh)
			return true
		}
		// The client is not reading fast enough. Storing would only move
		// the backlog to disk and reorder it; drop, as a mix node would.
		g.metrics.drop(dropClientQueue)
		return false
	}
	// The connection is going away: keep the packet for the next one.
	return g.storeLocked(cl, seq, dest.ID, payload)
}

// storeLocked queues payload for the disk under seq (0: take the next one)
// and reports whether it was accepted. cl.mu is held.
func (g *Gateway) storeLocked(cl *client, seq uint64, id [sphinx.IDSize]byte, payload []byte) bool {
	if !cl.recorded {
		// Registered over MaxStoredClients: nothing of it goes to disk.
		g.metrics.drop(dropClientsCap)
		return false
	}
	size := int64(recordHeaderLen + len(payload))
	if cl.storedBytes+size > g.cfg.MaxStoredBytes {
		cl.dropped++
		g.metrics.drop(dropStorageFull)
		return false
	}
	// Stored messages are paid when stored (seq 0: not already charged
	// live), and go out from the store free.
	if seq == 0 && cl.meter.metered && !g.charge(cl, cl.conn, deliverHeaderLen+len(payload)) {
		g.metrics.drop(dropNoTicket)
		return false
	}
	if seq == 0 {
		seq = g.issueSeqLocked(cl)
	}
	now := g.now().UnixNano()
	op := &writeOp{kind: opStore, client: cl, seq: seq, value: encodeRecord(now, id, payload)}
	if !g.enqueueLocked(op) {
		if g.closed.Load() {
			g.metrics.drop(dropClosed)
		} else {
			g.metrics.drop(dropStoreQueueFull)
		}
		return false
	}
	cl.lastSeen = max(cl.lastSeen, now) // the record holds it on disk
	cl.storedCount++
	cl.storedBytes += size
	cl.storedHigh = max(cl.storedHigh, seq)
	cl.pending++
	return true
}

// drain is the goroutine that sends a newly connected client what was stored
// for it, in order, then switches the client to live delivery. It stops
// early when the connection ends or is replaced.
func (g *Gateway) drain(s *session, sent uint64) {
	defer g.wg.Done()
	cl := s.client
	windowBase := sent // raised when a stall lets the next window go
	timer := time.NewTimer(g.drainStall)
	defer timer.Stop()
	for {
		cl.mu.Lock()
		if cl.sess != s {
			cl.mu.Unlock()
			return
		}
		var inFlight uint64
		if base := max(cl.confirmed, windowBase); sent > base {
			inFlight = sent - base
		}
		room := g.drainWindow - int(min(inFlight, uint64(g.drainWindow)))
		commits := cl.commits
		cl.mu.Unlock()

		blocked := room <= 0
		if !blocked {
			msgs, err := g.store.readAfter(cl.addr, sent, room)
			if err != nil {
				g.log.Error("gateway cannot read stored messages; closing client", "client", shortID(cl.addr), "err", err)
				g.closeLater(s.c, 0)
				return
			}
			if len(msgs) == 0 {
				cl.mu.Lock()
				done := cl.sess != s
				// Nothing pending and no commit since the read began: the
				// store holds nothing newer, so the stream can go live.
				if !done && cl.pending == 0 && cl.commits == commits {
					cl.live = true
					done = true
				}
				cl.mu.Unlock()
				if done {
					return
				}
			}
			var ok bool
			if sent, ok = g.sendStored(s, msgs, sent); !ok {
				blocked = true
			} else if len(msgs) > 0 {
				continue
			}
		}

		timer.Reset(g.drainStall)
		select {
		case <-s.wake:
		case <-timer.C:
			if blocked {
				windowBase = sent
			}
		case <-s.c.Done():
			return
		case <-g.serveCtx.Done():
			return
		}
	}
}

// sendStored queues msgs on s's connection and returns the last Seq sent,
// and false if the link queue would not take one.
func (g *Gateway) sendStored(s *session, msgs []storedMessage, sent uint64) (uint64, bool) {
	cl := s.client
	expiredBefore := g.now().Add(-g.cfg.MessageTTL).UnixNano()
	for _, m := range msgs {
		if m.corrupt || m.storedAt < expiredBefore {
			sent = m.seq // the sweep deletes it
			continue
		}
		frame := (&gatewire.Deliver{Seq: m.seq, ID: m.id, Payload: m.payload}).AppendBinary(nil)
		cl.mu.Lock()
		ok := cl.sess == s && g.toClient(cl, s.c, frame)
		if ok {
			cl.sentHigh = max(cl.sentHigh, m.seq)
		}
		cl.mu.Unlock()
		if !ok {
			return sent, false
		}
		sent = m.seq
		cl.delivered.Add(1)
		g.metrics.deliveredStored.Inc()
	}
	return sent, true
}
