package client

import (
	"context"
	"time"

	"github.com/nym-go/nym/anonymity"
	"github.com/nym-go/nym/mixnet/gatewire"
	"github.com/nym-go/nym/mixnet/link"
	"github.com/nym-go/nym/mixnet/sphinx"
)

// Message is a message received.
type Message struct {
	Data []byte
	// SenderTag is set when the sender attached reply SURBs: pass it to
	// Client.Reply. It names the sender only to us and says nothing about
	// who or where it is.
	SenderTag AnonymousSenderTag
	// IsReply is true for a message that came back through SURBs we gave
	// to From.
	IsReply bool
	From    Address
}

// inbound is one delivery from the gateway, with the connection to
// acknowledge it on.
type inbound struct {
	d    *gatewire.Deliver
	conn *link.Conn
	// trace is the frame's arrival, recorded once process knows whether
	// it was cover (Config.Trace; zero without).
	trace traceArrival
}

// receivedBatch is how many deliveries may go unacknowledged to the gateway
// while more are waiting; when none wait, we acknowledge at once.
const receivedBatch = 64

// maintenanceInterval is how often stale reassembly state, SURBs and reply
// keys are dropped.
const maintenanceInterval = 5 * time.Second

// receiptSlots is how many slots of a shaped downstream one receipt
// covers: a shaped client confirms on a clock of its own, one Received per
// receiptSlots × DownstreamInterval whether anything arrived or not. Sent
// per delivery, receipts came at the rate real deliveries did, so the
// client's upstream showed what the shaped downstream hid (anonymity
// measure: real frames told from cover by size at D 0.92 upstream, the
// receipts). Eight slots leave the gateway's drain window (128) room.
const receiptSlots = 8

// runReceive processes deliveries in the order the gateway sent them, and
// tells the gateway what it may forget. It owns the reassembler.
func (c *Client) runReceive(ctx context.Context) {
	defer close(c.messages)
	tick := time.NewTicker(maintenanceInterval)
	defer tick.Stop()
	// A shaped client's receipts: the newest delivery's sequence number and
	// connection, confirmed on receipts' clock.
	var receipts <-chan time.Time
	var lastConn *link.Conn
	var lastSeq uint64
	if d := c.cfg.Loopix.DownstreamInterval; d > 0 {
		rt := time.NewTicker(receiptSlots * d)
		defer rt.Stop()
		receipts = rt.C
	}
	var unacked int
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			now := time.Now()
			c.reasm.expire(now)
			c.surbs.expire(now)
			c.replyKeys.expire(now)
		case <-receipts:
			if lastConn != nil {
				c.sendReceipt(lastConn, lastSeq)
			}
		case in := <-c.inbound:
			cover := c.process(ctx, in.d)
			if in.trace.at != 0 {
				c.traceFrame(anonymity.In, in.trace, cover)
			}
			if receipts != nil {
				if in.conn != lastConn {
					lastConn, lastSeq = in.conn, 0
				}
				lastSeq = max(lastSeq, in.d.Seq)
				continue
			}
			unacked++
			if unacked >= receivedBatch || len(c.inbound) == 0 {
				// Everything up to this sequence number is processed.
				// Processed, not necessarily handed to the application: a
				// crash loses partly reassembled messages, as in Nym.
				c.sendReceipt(in.conn, in.d.Seq)
				unacked = 0
			}
		}
	}
}

// sendReceipt tells the gateway on conn that every delivery up to seq is
// processed.
func (c *Client) sendReceipt(conn *link.Conn, seq uint64) {
	if c.sendFrame(conn, link.Frame{Kind: link.KindClient, Payload: (&gatewire.Received{Seq: seq}).AppendBinary(nil)}, false) {
		c.stats.receiptsSent.Add(1)
	}
}

// process handles one delivery: an ack, a reply through one of our SURBs, or
// a forward packet (a message fragment or our own loop cover). It reports
// whether the delivery was our own cover coming back: loop cover, or a
// delivery nothing waited for (mostly loop cover's acks).
func (c *Client) process(ctx context.Context, d *gatewire.Deliver) (cover bool) {
	c.stats.deliveries.Add(1)
	if d.ID == zeroID {
		return c.processForward(ctx, d.Payload)
	}
	if j, mixes, ok := c.acks.ack(d.ID); ok {
		c.stats.acksReceived.Add(1)
		c.routes.health.delivered(mixes[:])
		c.finish(j)
		return false
	}
	if keys, tag, ok := c.replyKeys.take(d.ID); ok {
		c.processReply(ctx, d.Payload, &keys, tag)
		return false
	}
	// Acks of loop cover, late duplicate acks, replies through SURBs
	// whose keys expired.
	c.stats.unmatchedDeliveries.Add(1)
	return true
}

// processForward handles a forward packet; true if it was loop cover.
func (c *Client) processForward(ctx context.Context, payload []byte) (cover bool) {
	body, err := sphinx.OpenPayload(payload)
	if err != nil {
		c.badDelivery("forward payload", err)
		return
	}
	env, err := gatewire.ParseEnvelope(body)
	if err != nil {
		c.badDelivery("envelope", err)
		return
	}
	pt, err := open(c.priv, env.Body)
	if err != nil {
		c.badDelivery("sealed body", err)
		return
	}
	fb, err := unpadPlaintext(pt)
	if err != nil {
		c.badDelivery("sealed body", err)
		return
	}
	var f Fragment
	if err := f.UnmarshalBinary(fb); err != nil {
		c.badDelivery("fragment", err)
		return
	}
	if f.SetID == coverSetID {
		c.stats.coverReceived.Add(1)
		return true
	}
	c.addFragment(ctx, f, origin{})
	return false
}

func (c *Client) processReply(ctx context.Context, payload []byte, keys *sphinx.ReplyKeys, tag AnonymousSenderTag) {
	pt, err := keys.Open(payload)
	if err != nil {
		c.badDelivery("reply payload", err)
		return
	}
	var f Fragment
	if err := f.UnmarshalBinary(pt); err != nil {
		c.badDelivery("reply fragment", err)
		return
	}
	c.addFragment(ctx, f, origin{viaSURB: true, tag: tag})
}

func (c *Client) addFragment(ctx context.Context, f Fragment, o origin) {
	if f.SetID == coverSetID {
		c.badDelivery("fragment", ErrBadFragment)
		return
	}
	msg, err := c.reasm.add(time.Now(), f, o)
	if err != nil {
		if err == errDuplicateFragment { // a retransmission whose first copy made it
			c.stats.duplicates.Add(1)
		} else {
			c.badDelivery("fragment", err)
		}
		return
	}
	if msg == nil {
		return
	}
	if h := c.cfg.hooks; h != nil && h.onMessage != nil {
		h.onMessage(msg)
	}
	m, err := parseMessage(msg)
	if err != nil {
		c.badDelivery("message", err)
		return
	}
	c.handleMessage(ctx, m, o)
}

// handleMessage acts on a whole message. What may arrive depends on how it
// came: replies and SURB requests only through our SURBs, everything else only
// sealed on the forward path.
func (c *Client) handleMessage(ctx context.Context, m *message, o origin) {
	if o.viaSURB {
		switch m.kind {
		case kindReply:
			c.stats.repliesReceived.Add(1)
			from, _ := c.replyKeys.addressOf(o.tag)
			c.deliver(ctx, Message{Data: m.data, IsReply: true, From: from})
		case kindSURBRequest:
			c.stats.surbRequestsReceived.Add(1)
			select {
			case c.surbRequests <- surbRequest{tag: o.tag, want: int(m.want)}:
			default: // busy answering others; the replier asks again
			}
		default:
			c.badDelivery("message", ErrBadMessage)
		}
		return
	}
	switch m.kind {
	case kindPlain:
		c.deliver(ctx, Message{Data: m.data})
	case kindRepliable:
		c.surbs.add(m.tag, m.surbs, false, time.Now())
		c.stats.surbsReceived.Add(uint64(len(m.surbs)))
		if len(m.surbs) > 0 {
			c.sched.surbsArrived(m.tag)
		}
		c.deliver(ctx, Message{Data: m.data, SenderTag: m.tag})
	case kindMoreSURBs:
		c.surbs.add(m.tag, m.surbs, true, time.Now())
		c.stats.surbsReceived.Add(uint64(len(m.surbs)))
		c.sched.surbsArrived(m.tag)
	default:
		c.badDelivery("message", ErrBadMessage)
	}
}

func (c *Client) deliver(ctx context.Context, m Message) {
	if m.Data == nil {
		m.Data = []byte{}
	}
	select {
	case c.messages <- m:
		c.stats.messagesReceived.Add(1)
	case <-ctx.Done():
	}
}

func (c *Client) badDelivery(what string, err error) {
	c.stats.badDeliveries.Add(1)
	c.logLimited("dropped a delivery", "part", what, "err", err)
}
