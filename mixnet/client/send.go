package client

import (
	"context"
	"time"

	"github.com/nym-go/nym/mixnet/link"
)

// buildRetryDelay is how long a reliable fragment whose packet could not be
// built (no route for now) waits before the next attempt.
const buildRetryDelay = time.Second

// runBuilder turns queued jobs into packets until ctx ends. Several run at
// once: building costs about five X25519 ladders per packet, and with the
// Poisson stream off it is what limits the send rate.
func (c *Client) runBuilder(ctx context.Context) {
	for {
		var j *job
		// Resends go first: their messages are already late.
		select {
		case j = <-c.retries:
		default:
			select {
			case j = <-c.retries:
			case j = <-c.jobs:
			case <-ctx.Done():
				return
			}
		}
		if j.finished.Load() { // acknowledged while it waited to be resent
			c.stats.queued.Add(-1)
			continue
		}
		p, err := c.build(j)
		if err != nil {
			c.buildFailed(j, err)
			continue
		}
		p.j = j
		select {
		case c.ready <- p:
		case <-ctx.Done():
			return
		}
	}
}

func (c *Client) build(j *job) (*builtPacket, error) {
	if j.surb != nil {
		return buildReply(j.surb, j.plaintext)
	}
	return c.buildForward(j.to, j.plaintext, j.ackID)
}

func (c *Client) buildFailed(j *job, err error) {
	c.stats.queued.Add(-1)
	c.stats.buildFailures.Add(1)
	c.logLimited("cannot build packet", "err", err)
	if j.reliable {
		j.sends.Add(1)
		c.acks.track(j, packetMixes{}, time.Now().Add(buildRetryDelay))
		return
	}
	c.stats.packetsDropped.Add(1)
	c.finish(j)
}

// realTick serves one tick of the main Poisson stream: the next packet in
// turn (see scheduler), or loop cover when none is ready.
func (c *Client) realTick(now time.Time) {
	conn := c.link.current()
	if conn == nil {
		return // offline: nothing can be sent, and queued packets wait
	}
	if p, s := c.sched.next(); p != nil {
		c.transmit(conn, p, now)
		if s != nil {
			s.sentOne()
		}
		return
	}
	c.sendCover(conn, now)
}

// runDirect sends packets as soon as they are built: the Poisson stream is
// off.
func (c *Client) runDirect(ctx context.Context) {
	for {
		var p *builtPacket
		select {
		case p = <-c.ready:
		case <-ctx.Done():
			return
		}
		conn, err := c.link.wait(ctx)
		if err != nil {
			return
		}
		c.transmit(conn, p, time.Now())
	}
}

// coverTick serves one tick of the loop cover stream.
func (c *Client) coverTick(now time.Time) {
	if conn := c.link.current(); conn != nil {
		c.sendCover(conn, now)
	}
}

// extendedCoverTick serves one tick of the extended loop cover stream. The
// packet is built here, on the clock's goroutine: four ladders at a rate of
// a few per second, where a builder ahead would hold buffers of 8.5 KB.
func (c *Client) extendedCoverTick(now time.Time) {
	conn := c.link.current()
	if conn == nil {
		return
	}
	p, err := c.buildExtendedCover()
	if err != nil {
		c.stats.buildFailures.Add(1)
		c.logLimited("cannot build extended cover packet", "err", err)
		return
	}
	c.transmit(conn, p, now)
}

func (c *Client) sendCover(conn *link.Conn, now time.Time) {
	var p *builtPacket
	select {
	case p = <-c.covers:
	default:
		// The builder fell behind (or the topology is missing): build one
		// here rather than skip the tick, which would change the rate.
		var err error
		if p, err = c.buildCover(); err != nil {
			c.stats.buildFailures.Add(1)
			c.logLimited("cannot build cover packet", "err", err)
			return
		}
	}
	c.transmit(conn, p, now)
}

// coverLead is how much of the Poisson streams' cover is built ahead. A
// slot whose cover is not ready builds it on the clock's goroutine (nine
// ladders, about a millisecond), which holds back every slot after it: at
// 500 slots/s the clock then falls behind its schedule. 50 ms rides out the
// scheduling stalls of a busy machine; the packets wait in memory, built
// for the topology of 50 ms ago at most.
const coverLead = 50 * time.Millisecond

// coverAhead is the cover packets kept ready for lp's rates: coverLead's
// worth, at least 4.
func coverAhead(lp *Loopix) int {
	return max(4, int(lp.PacketsPerSecond()*coverLead.Seconds()))
}

// runCoverBuilder keeps loop cover packets ready (coverAhead), so a tick
// costs a channel receive and not nine scalar multiplications. One runs
// per core.
func (c *Client) runCoverBuilder(ctx context.Context) {
	for {
		p, err := c.buildCover()
		if err != nil {
			c.logLimited("cannot build cover packet", "err", err)
			select {
			case <-time.After(buildRetryDelay):
				continue
			case <-ctx.Done():
				return
			}
		}
		select {
		case c.covers <- p:
		case <-ctx.Done():
			return
		}
	}
}

// transmit hands p to the gateway. A reliable fragment's ack timer starts
// before the packet leaves, so even an ack that beats this goroutine back
// finds it.
func (c *Client) transmit(conn *link.Conn, p *builtPacket, now time.Time) {
	j := p.j
	if j != nil {
		c.stats.queued.Add(-1)
	}
	if j != nil && j.reliable && j.finished.Load() {
		// Acknowledged while this resend waited to go out. A Poisson
		// slot must not be seen empty: cover takes its place.
		if c.cfg.Loopix.SendInterval > 0 {
			c.sendCover(conn, now)
		}
		return
	}
	if j != nil && j.reliable {
		j.sends.Add(1)
		c.acks.track(j, p.mixes, now.Add(c.ackTimeout(p.rtt)))
	}
	real := j != nil || p.stream
	if h := c.cfg.hooks; h != nil && h.onSend != nil {
		// A copy: the buffer goes back to the pool once the link has
		// written it, and the tests keep what they watch.
		h.onSend(now, append([]byte(nil), p.wire...), real)
	}
	done := p.done
	if done == nil {
		done = releaseWire
	}
	ok := c.sendFrame(conn, link.Frame{Kind: link.KindClient, Payload: p.wire, Done: done}, !real)
	if !ok {
		c.stats.packetsDropped.Add(1)
	}
	switch {
	case !real:
		c.stats.coverSent.Add(1)
	default:
		c.stats.realSent.Add(1)
		if j != nil && !j.reliable {
			c.finish(j)
		}
	}
}

// ackTimeout is how long to wait for an ack: the delays the packet and its
// ack were given, stretched, plus slack for queues and links (Nym's rule).
func (c *Client) ackTimeout(rtt time.Duration) time.Duration {
	r := c.cfg.Retransmit
	return time.Duration(float64(rtt)*r.Multiplier) + r.Slack
}
