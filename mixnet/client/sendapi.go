package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nym-go/nym/mixnet/sphinx"
)

// ErrMessageTooLarge is returned for a message over the size limits.
var ErrMessageTooLarge = errors.New("client: message too large")

// messageOverheadMax is the most a message's header adds to its data.
const messageOverheadMax = 1 + 16 + 2 + maxSURBsPerMessage*replySURBSize

// Send sends msg to an address, reliably: each fragment is acknowledged and
// sent again on a fresh route when its ack is late. It returns once every
// fragment is queued (blocking while MaxInFlight fragments are in flight);
// Flush waits for the acks.
func (c *Client) Send(ctx context.Context, to Address, msg []byte) error {
	return c.sendMessage(ctx, to, &message{kind: kindPlain, data: msg}, true)
}

// SendWithReplySURBs sends msg with nSURBs reply SURBs, so that the
// recipient can answer with Reply without learning our address. Our sender
// tag is the same for every message to one address, so the recipient can
// add the SURBs up; it differs between addresses.
func (c *Client) SendWithReplySURBs(ctx context.Context, to Address, msg []byte, nSURBs int) error {
	m, err := c.repliable(to, msg, nSURBs)
	if err != nil {
		return err
	}
	return c.sendMessage(ctx, to, m, true)
}

// SendRepliablePacket sends data in exactly one packet, without
// acknowledgement or retransmission, with our sender tag for the recipient
// and nSURBs ≥ 0 reply SURBs: with none, the recipient can still tell the
// packet's sender (by tag, not by address) and answer it through SURBs we
// gave earlier. data may be at most RepliablePacketCapacity(nSURBs) bytes.
// It is for rare control packets (a tunnel's connect and ping); a steady
// flow of packets is a stream (OpenStream), pulled when a slot is free.
func (c *Client) SendRepliablePacket(ctx context.Context, to Address, data []byte, nSURBs int) error {
	if limit := c.RepliablePacketCapacity(nSURBs); len(data) > limit {
		return fmt.Errorf("%w: %d bytes, one tagged packet with %d SURBs carries %d", ErrMessageTooLarge, len(data), nSURBs, limit)
	}
	m, err := c.repliable(to, data, nSURBs)
	if err != nil {
		return err
	}
	return c.sendMessage(ctx, to, m, false)
}

// RepliablePacketCapacity is how many bytes of data SendRepliablePacket
// carries in one packet with nSURBs ≥ 0 reply SURBs; negative when the tag
// and SURBs alone do not fit.
func (c *Client) RepliablePacketCapacity(nSURBs int) int {
	return repliableDataCapacity(max(nSURBs, 0))
}

// ReplyCapacity is how many bytes one reply packet (one SURB) carries: a
// regular one, the least any SURB offers.
func (c *Client) ReplyCapacity() int {
	return replyDataCapacity
}

// ReplyCapacity is how many bytes one reply through the SURBs of a client
// with these parameters carries: more than Client.ReplyCapacity with
// ExtendedReplies.
func (l Loopix) ReplyCapacity() int {
	if l.ExtendedReplies {
		return replyDataCapacityOf(sphinx.SizeExtended)
	}
	return replyDataCapacity
}

func (c *Client) repliable(to Address, msg []byte, nSURBs int) (*message, error) {
	if nSURBs < 0 || nSURBs > maxSURBsPerMessage {
		return nil, fmt.Errorf("client: %d SURBs requested, limit %d", nSURBs, maxSURBsPerMessage)
	}
	tag := c.replyKeys.tagFor(to)
	surbs, err := c.makeSURBs(nSURBs, tag)
	if err != nil {
		return nil, err
	}
	return &message{kind: kindRepliable, tag: tag, surbs: surbs, data: msg}, nil
}

// makeSURBs makes n SURBs back to us and keeps their keys under tag.
func (c *Client) makeSURBs(n int, tag AnonymousSenderTag) ([]replySURB, error) {
	surbs := make([]replySURB, n)
	now := time.Now()
	for i := range surbs {
		var id [sphinx.IDSize]byte
		randomID(&id)
		s, keys, err := c.newSURB(id)
		if err != nil {
			return nil, err
		}
		surbs[i] = s
		c.replyKeys.put(id, keys, tag, now)
	}
	c.stats.surbsCreated.Add(uint64(n))
	return surbs, nil
}

func (c *Client) sendMessage(ctx context.Context, to Address, m *message, reliable bool) error {
	if len(m.data) > c.cfg.MaxMessageSize {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrMessageTooLarge, len(m.data), c.cfg.MaxMessageSize)
	}
	// Fail now, not after every retransmission, when the recipient's
	// gateway is unknown.
	if err := c.routes.knows(to.Gateway); err != nil {
		return fmt.Errorf("client: sending to %s: %w", to, err)
	}
	body, err := m.appendBinary(make([]byte, 0, m.headerLen()+len(m.data)))
	if err != nil {
		return err
	}
	frags, err := splitMessage(c.newSetID(), body, FragmentCapacity)
	if err != nil {
		return err
	}
	if !reliable && len(frags) > 1 {
		return fmt.Errorf("%w: unacknowledged messages must fit one packet", ErrMessageTooLarge)
	}
	now := time.Now()
	for i := range frags {
		pt, err := padPlaintext(&frags[i])
		if err != nil {
			return err
		}
		j := &job{to: to, plaintext: pt, reliable: reliable, queued: now}
		randomID(&j.ackID)
		if err := c.enqueue(ctx, j); err != nil {
			return err
		}
	}
	c.stats.messagesSent.Add(1)
	return nil
}

// enqueue waits for a window slot and queues j.
func (c *Client) enqueue(ctx context.Context, j *job) error {
	if c.ctx.Err() != nil {
		return errClosed
	}
	select {
	case c.window <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("client: send queue full: %w", ctx.Err())
	case <-c.ctx.Done():
		return errClosed
	}
	// Every queued job holds a window slot and jobs has the window's
	// capacity, so this never blocks.
	c.stats.queued.Add(1)
	c.jobs <- j
	return nil
}

func (c *Client) newSetID() uint64 {
	for {
		if id := c.rnd.uint64(); id != coverSetID {
			return id
		}
	}
}

// ReplySURBs is how many of tag's SURBs we hold: how many reply packets
// could go out now without waiting for more.
func (c *Client) ReplySURBs(tag AnonymousSenderTag) int { return c.surbs.count(tag) }

// Reply answers the sender of a message that carried reply SURBs, through
// them, one SURB per packet. When we hold too few it asks the sender for
// more (spending one SURB) and waits for them until ctx ends. Replies are not
// acknowledged.
func (c *Client) Reply(ctx context.Context, tag AnonymousSenderTag, msg []byte) error {
	if len(msg) > c.cfg.MaxMessageSize {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrMessageTooLarge, len(msg), c.cfg.MaxMessageSize)
	}
	m := message{kind: kindReply, data: msg}
	body, err := m.appendBinary(make([]byte, 0, m.headerLen()+len(msg)))
	if err != nil {
		return err
	}
	frags, err := splitMessage(c.newSetID(), body, ReplyFragmentCapacity)
	if err != nil {
		return err
	}
	if len(frags) > c.cfg.SURBs.MaxPerSender {
		return fmt.Errorf("%w: a reply of %d packets needs more SURBs than we keep per sender (%d)", ErrMessageTooLarge, len(frags), c.cfg.SURBs.MaxPerSender)
	}
	for {
		plan, err := c.surbs.takeForReply(tag, len(frags), time.Now())
		if err != nil {
			return fmt.Errorf("%w (tag %s)", err, tag)
		}
		if plan.request != nil {
			if err := c.requestSURBs(ctx, plan.request, plan.want); err != nil {
				return err
			}
		}
		if plan.surbs != nil {
			c.stats.surbsSpent.Add(uint64(len(plan.surbs)))
			for i := range frags {
				pt, err := frags[i].AppendBinary(make([]byte, 0, FragmentHeaderLen+len(frags[i].Data)))
				if err != nil {
					return err
				}
				if err := c.enqueue(ctx, &job{surb: &plan.surbs[i], plaintext: pt, queued: time.Now()}); err != nil {
					return err
				}
			}
			c.stats.messagesSent.Add(1)
			return nil
		}
		select {
		case <-plan.wait:
		case <-ctx.Done():
			return fmt.Errorf("client: waiting for reply SURBs: %w", ctx.Err())
		case <-c.ctx.Done():
			return errClosed
		}
	}
}

// requestSURBs asks a sender, through one of its SURBs, for want more.
func (c *Client) requestSURBs(ctx context.Context, s *replySURB, want int) error {
	j, err := c.surbRequestJob(s, want)
	if err != nil {
		return err
	}
	c.stats.surbRequestsSent.Add(1)
	c.stats.surbsSpent.Add(1)
	return c.enqueue(ctx, j)
}

// surbRequestJob is the packet that asks, through s, for want more SURBs.
func (c *Client) surbRequestJob(s *replySURB, want int) (*job, error) {
	m := message{kind: kindSURBRequest, want: uint16(min(want, maxSURBsPerMessage))}
	body, _ := m.appendBinary(nil)
	f := Fragment{SetID: c.newSetID(), Count: 1, Data: body}
	pt, err := f.AppendBinary(nil)
	if err != nil {
		return nil, err
	}
	return &job{surb: s, plaintext: pt, queued: time.Now()}, nil
}

// requestSURBsNow is requestSURBs without waiting: when the window is full
// the request is not sent (the caller asks again later).
func (c *Client) requestSURBsNow(s *replySURB, want int) error {
	j, err := c.surbRequestJob(s, want)
	if err != nil {
		return err
	}
	select {
	case c.window <- struct{}{}:
	default:
		return errors.New("client: send window full")
	}
	c.stats.surbRequestsSent.Add(1)
	c.stats.surbsSpent.Add(1)
	c.stats.queued.Add(1)
	c.jobs <- j // never blocks: see enqueue
	return nil
}

// surbRequest is a replier asking us, through one of our SURBs, for more.
type surbRequest struct {
	tag  AnonymousSenderTag
	want int
}

// runSURBRequests answers requests for more SURBs, off the receive loop:
// making SURBs costs a Sphinx header each, and sending may wait for the
// window.
func (c *Client) runSURBRequests(ctx context.Context) {
	for {
		var req surbRequest
		select {
		case req = <-c.surbRequests:
		case <-ctx.Done():
			return
		}
		to, ok := c.replyKeys.addressOf(req.tag)
		if !ok {
			continue
		}
		n := min(max(req.want, 1), c.cfg.SURBs.Grant)
		surbs, err := c.makeSURBs(n, req.tag)
		if err != nil {
			c.logLimited("cannot make SURBs for a request", "err", err)
			continue
		}
		m := &message{kind: kindMoreSURBs, tag: req.tag, surbs: surbs}
		if err := c.sendMessage(ctx, to, m, true); err != nil && ctx.Err() == nil {
			c.logLimited("cannot send SURBs", "err", err)
		}
	}
}
