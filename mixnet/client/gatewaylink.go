package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nym-go/nym/anonymity"
	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/gatewire"
	"github.com/nym-go/nym/mixnet/link"
)

// gatewayLink holds the current connection to our gateway, nil while we are
// reconnecting.
type gatewayLink struct {
	mu    sync.Mutex
	conn  *link.Conn
	ready chan struct{} // closed while conn is set
	lost  time.Time     // when conn went nil; zero while connected
}

func newGatewayLink() *gatewayLink { return &gatewayLink{ready: make(chan struct{})} }

func (g *gatewayLink) current() *link.Conn {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.conn
}

func (g *gatewayLink) set(c *link.Conn) {
	g.mu.Lock()
	defer g.mu.Unlock()
	was := g.conn
	g.conn = c
	switch {
	case c != nil && was == nil:
		close(g.ready)
		g.lost = time.Time{}
	case c == nil && was != nil:
		g.ready = make(chan struct{})
		g.lost = time.Now()
	}
}

// offline is how long we have been without a connection; 0 while connected.
func (g *gatewayLink) offline(now time.Time) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.conn != nil || g.lost.IsZero() {
		return 0
	}
	return now.Sub(g.lost)
}

// wait returns the connection, waiting for one while we are reconnecting.
func (g *gatewayLink) wait(ctx context.Context) (*link.Conn, error) {
	for {
		g.mu.Lock()
		c, ready := g.conn, g.ready
		g.mu.Unlock()
		if c != nil {
			return c, nil
		}
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// gatewayNode returns how to reach our gateway: from the current topology,
// or as last seen when it has left the topology (it may still serve us).
func (c *Client) gatewayNode() directory.Node {
	if t := c.routes.topo.Load(); t != nil {
		if n, ok := t.NodeByIdentity(c.addr.Gateway); ok {
			c.routes.own.Store(&n)
			return n
		}
	}
	return *c.routes.own.Load()
}

// rotation is the key rotation of the topology the client holds: the
// gateway's KEM key for it is the one to dial with.
func (c *Client) rotation() uint64 {
	if t := c.routes.topo.Load(); t != nil {
		return t.Rotation
	}
	return 0
}

// dial connects to our gateway. The connection lives as long as the client
// unless it drops; stopDial, when non-nil, ends an attempt early.
func (c *Client) dial(stopDial context.Context) (*link.Conn, error) {
	gw := c.gatewayNode()
	if gw.ClientsAddr == "" {
		return nil, fmt.Errorf("client: gateway %s has no clients address", gw.Identity)
	}
	ctx, cancel := context.WithCancel(c.ctx)
	stop := func() bool { return true }
	if stopDial != nil {
		stop = context.AfterFunc(stopDial, cancel)
	}
	conn, err := link.Dial(ctx, gw.ClientsAddr, gw.NoiseKey, link.Config{
		Static:      c.identity,
		Handler:     c.handleFrame,
		OnClose:     func(*link.Conn, error) { cancel() },
		DialContext: c.cfg.DialContext,
		Logger:      c.log,
		Stats:       c.linkStats,
		PeerKEM:     gatewayKEM(gw, c.rotation()),
	})
	if !stop() && err == nil {
		conn.Close()
		err = stopDial.Err()
	}
	if err != nil {
		cancel()
		return nil, fmt.Errorf("client: connecting to gateway %s at %s: %w", gw.Identity, gw.ClientsAddr, err)
	}
	c.stats.downstreamInterval.Store(0) // until this connection's grant
	if lp := c.cfg.Loopix; lp.DownstreamInterval > 0 {
		// First thing on every connection, so the gateway shapes all but
		// its greeting (and what it sends in this round trip).
		c.sendFrame(conn, link.Frame{Kind: link.KindClient, Payload: (&gatewire.Shape{Interval: lp.DownstreamInterval, FrameLen: lp.DownstreamFrameLen()}).AppendBinary(nil)}, false)
	}
	return conn, nil
}

// runLink keeps us connected to the gateway: when the connection drops it
// dials again, waiting longer after each failure. On reconnecting, the
// gateway delivers what it stored for us meanwhile.
func (c *Client) runLink(ctx context.Context, conn *link.Conn) {
	backoff := c.cfg.ReconnectMin
	for {
		up := time.Now()
		select {
		case <-ctx.Done():
			conn.Close()
			c.link.set(nil)
			return
		case <-conn.Done():
		}
		c.link.set(nil)
		if ctx.Err() != nil { // closing, not a lost connection
			return
		}
		c.log.Warn("gateway connection lost; reconnecting", "gateway", c.addr.Gateway, "err", conn.Err())
		// A connection that dies at once (the gateway refuses us) must not
		// turn into a tight reconnect loop.
		if time.Since(up) > 10*time.Second {
			backoff = c.cfg.ReconnectMin
		}
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(jitter(backoff, c.rnd)):
			}
			backoff = min(2*backoff, c.cfg.ReconnectMax)
			var err error
			conn, err = c.dial(nil)
			if err == nil {
				break
			}
			if errors.Is(err, context.Canceled) && ctx.Err() != nil {
				return
			}
			c.log.Info("gateway reconnect failed", "err", err, "retry_in", backoff)
		}
		c.stats.reconnects.Add(1)
		c.log.Info("gateway reconnected", "gateway", c.addr.Gateway)
		c.link.set(conn)
	}
}

// jitter spreads d by ±25% so that many clients of a restarted gateway do
// not come back in lockstep.
func jitter(d time.Duration, rnd *randomSource) time.Duration {
	return time.Duration(float64(d) * (0.75 + 0.5*rnd.float64()))
}

// handleFrame runs on the connection's reader goroutine. Deliveries go to
// the receive loop; when it falls behind, this blocks and TCP pushes back on
// the gateway, which keeps the rest stored.
func (c *Client) handleFrame(conn *link.Conn, f link.Frame) error {
	if f.Kind != link.KindClient {
		return nil
	}
	var arrival traceArrival
	if c.cfg.Trace != nil {
		arrival = traceArrival{at: time.Now().UnixNano(), packet: anonymity.PacketIDOf(f.Payload), size: len(f.Payload)}
	}
	return c.handleGatewayMessage(conn, f.Payload, arrival)
}

// handleGatewayMessage acts on one message from the gateway. A Slot of the
// shaped downstream carries several, or none (Parse refuses a slot in a
// slot). Deliveries alias b, which is ours. arrival, when traced, is the
// frame's: recorded here, or with the frame's first delivery once the
// receive loop knows whether that was cover.
func (c *Client) handleGatewayMessage(conn *link.Conn, b []byte, arrival traceArrival) error {
	msg, err := gatewire.Parse(b)
	if err != nil {
		c.stats.badDeliveries.Add(1)
		c.logLimited("malformed message from gateway", "err", err)
		return nil
	}
	if slot, ok := msg.(*gatewire.Slot); ok {
		c.stats.slots.Add(1)
		if len(slot.Messages) == 0 {
			c.stats.gatewayCover.Add(1)
		}
		first := slices.IndexFunc(slot.Messages, func(m []byte) bool { return gatewire.Type(m[0]) == gatewire.TypeDeliver })
		if first < 0 && arrival.at != 0 {
			c.traceFrame(anonymity.In, arrival, len(slot.Messages) == 0) // the gateway's cover, or control
		}
		for i, inner := range slot.Messages {
			a := traceArrival{}
			if i == first {
				a = arrival
			}
			if err := c.handleGatewayMessage(conn, inner, a); err != nil {
				return err
			}
		}
		return nil
	}
	if _, ok := msg.(*gatewire.Deliver); !ok && arrival.at != 0 {
		c.traceFrame(anonymity.In, arrival, false) // control: never cover
	}
	switch m := msg.(type) {
	case *gatewire.Shape:
		c.stats.downstreamInterval.Store(int64(m.Interval))
		if want := c.cfg.Loopix.DownstreamInterval; m.Interval != want {
			c.log.Info("gateway shapes our downstream at another rate", "asked", want, "granted", m.Interval)
		}
	case *gatewire.Deliver:
		select {
		case c.inbound <- inbound{d: m, conn: conn, trace: arrival}:
		case <-c.ctx.Done():
			return c.ctx.Err()
		}
	case *gatewire.Quota:
		c.onQuota(m)
	case *gatewire.Status:
		if m.Code == gatewire.StatusNoTicket {
			c.onTicketStatus(m.Text)
			return nil
		}
		if m.Code == gatewire.StatusOK {
			c.log.Debug("gateway status", "text", m.Text)
		} else {
			c.log.Warn("gateway status", "code", m.Code, "text", m.Text)
		}
	default:
		c.stats.badDeliveries.Add(1)
		c.logLimited("unexpected message from gateway", "type", fmt.Sprintf("%T", msg))
	}
	return nil
}
