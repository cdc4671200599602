package link

import (
	"context"
	"encoding/hex"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Pool defaults.
const (
	DefaultBackoffMin  = 100 * time.Millisecond
	DefaultBackoffMax  = 10 * time.Second
	DefaultIdleTimeout = 2 * time.Minute
)

// stableConnTime is how long a connection must have lived for its loss to
// reset the backoff. A peer that accepts and at once drops us should not be
// redialled in a tight loop.
const stableConnTime = time.Second

// Peer names a link server: where to dial and the static key it must prove it
// holds (from the signed topology).
type Peer struct {
	Addr   string
	Static [32]byte
}

// PoolConfig configures outbound links.
type PoolConfig struct {
	Config
	// BackoffMin and BackoffMax bound the wait between failed attempts to
	// reach a peer; it doubles after each failure. Defaults 100 ms and 10 s.
	BackoffMin, BackoffMax time.Duration
	// IdleTimeout closes and forgets a peer that was sent nothing for between
	// one and two IdleTimeouts. A disconnected idle peer loses the frames it
	// still queued. Default 2 min; negative never.
	IdleTimeout time.Duration
}

// Pool keeps one outbound connection per peer, made on first use. Each peer
// has a bounded queue that outlives its connection: frames sent while the
// link is down wait (up to the bound) and go out once it is back.
type Pool struct {
	cfg    PoolConfig
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // one per peer goroutine

	mu     sync.RWMutex // guards peers and closed; enqueue holds it for reading
	peers  map[Peer]*peerLink
	closed bool
}

// peerLink is one peer's queue and the state of its connection goroutine.
type peerLink struct {
	peer   Peer
	queue  chan Frame
	active atomic.Bool // a frame was queued since the last idle check
	log    *slog.Logger
}

// NewPool returns an empty pool. Cancelling ctx stops it as Close does, but
// only Close waits for its goroutines.
func NewPool(ctx context.Context, cfg PoolConfig) (*Pool, error) {
	var err error
	if cfg.Config, err = cfg.Config.withDefaults(); err != nil {
		return nil, err
	}
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = DefaultBackoffMin
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = DefaultBackoffMax
	}
	cfg.BackoffMax = max(cfg.BackoffMax, cfg.BackoffMin)
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	p := &Pool{cfg: cfg, peers: make(map[Peer]*peerLink)}
	p.ctx, p.cancel = context.WithCancel(ctx)
	return p, nil
}

// Stats returns the counters of every connection in the pool.
func (p *Pool) Stats() *Stats { return p.cfg.Stats }

// Send queues f for peer, connecting to it if needed, and reports whether f
// was queued. It never blocks: a full queue, a closed pool or an invalid frame
// or peer drops f and counts it. As with Conn.Send, the caller must not modify
// f.Payload after a successful Send.
func (p *Pool) Send(peer Peer, f Frame) bool {
	p.mu.RLock()
	if pl := p.peers[peer]; pl != nil {
		ok := p.enqueue(pl, f)
		p.mu.RUnlock()
		return ok
	}
	p.mu.RUnlock()
	return p.sendNew(peer, f)
}

// sendNew is Send's slow path: the peer has no link yet.
func (p *Pool) sendNew(peer Peer, f Frame) bool {
	if f.Validate() != nil || peer.Addr == "" || peer.Static == [32]byte{} {
		p.cfg.Stats.DroppedInvalid.Add(1)
		f.done()
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		p.cfg.Stats.DroppedClosed.Add(1)
		f.done()
		return false
	}
	pl := p.peers[peer]
	if pl == nil {
		pl = &peerLink{
			peer:  peer,
			queue: make(chan Frame, p.cfg.QueueLen),
			log:   p.cfg.Logger.With("peer", peer.Addr, "peer_key", hex.EncodeToString(peer.Static[:4])),
		}
		p.peers[peer] = pl
		p.wg.Add(1)
		go p.run(pl)
	}
	return p.enqueue(pl, f)
}

// enqueue queues f for pl; the caller holds p.mu (either way), which is what
// lets retire know no frame is on its way into a queue it is about to drop.
func (p *Pool) enqueue(pl *peerLink, f Frame) bool {
	if !pl.active.Load() { // read first: a store on every send would bounce the cache line
		pl.active.Store(true)
	}
	return enqueue(pl.queue, f, p.ctx.Done(), p.cfg.Stats)
}

// Close stops every connection and waits for the pool's goroutines. Frames
// still queued are dropped and counted.
func (p *Pool) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.cancel()
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	for peer, pl := range p.peers {
		p.cfg.Stats.DroppedClosed.Add(uint64(drain(pl.queue)))
		delete(p.peers, peer)
	}
}

// run owns one peer's connection: it connects, waits for the connection to
// end, and reconnects with exponential backoff, until the pool closes or the
// peer goes idle.
func (p *Pool) run(pl *peerLink) {
	defer p.wg.Done()
	var idle <-chan time.Time
	if p.cfg.IdleTimeout > 0 {
		t := time.NewTicker(p.cfg.IdleTimeout)
		defer t.Stop()
		idle = t.C
	}
	backoff := p.cfg.BackoffMin
	for {
		nc, sess, err := connect(p.ctx, pl.peer.Addr, pl.peer.Static, &p.cfg.Config)
		if err != nil {
			if p.ctx.Err() != nil {
				return
			}
			pl.log.Debug("link to peer failed; retrying", "err", err, "retry_in", backoff)
			if !p.pause(pl, backoff, idle) {
				return
			}
			backoff = min(2*backoff, p.cfg.BackoffMax)
			continue
		}
		c := newConn(p.ctx, nc, sess, &p.cfg.Config, pl.queue, false, nil)
		c.start()
		pl.log.Debug("link up")
		up := time.Now()
		if !p.watch(pl, c, idle) {
			return
		}
		lived := time.Since(up)
		pl.log.Info("link down; reconnecting", "err", c.Err(), "lived", lived)
		if lived >= stableConnTime {
			backoff = p.cfg.BackoffMin
			continue
		}
		if !p.pause(pl, backoff, idle) {
			return
		}
		backoff = min(2*backoff, p.cfg.BackoffMax)
	}
}

// watch waits while c is up. It reports false when the peer's goroutine
// should stop: the pool closed, or the peer went idle and was retired.
func (p *Pool) watch(pl *peerLink, c *Conn, idle <-chan time.Time) bool {
	for {
		select {
		case <-c.Done():
			// A closing pool cancels c through its context.
			return p.ctx.Err() == nil
		case <-idle:
			if p.retire(pl, true) {
				pl.log.Debug("link idle; closing")
				c.Close()
				return false
			}
		}
	}
}

// pause waits d between attempts. It reports false when the peer's goroutine
// should stop.
func (p *Pool) pause(pl *peerLink, d time.Duration, idle <-chan time.Time) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return true
		case <-p.ctx.Done():
			return false
		case <-idle:
			if p.retire(pl, false) {
				pl.log.Debug("peer idle while unreachable; forgetting it")
				return false
			}
		}
	}
}

// retire removes pl from the pool if nothing was sent to it since the last
// idle tick. A connected peer with frames still queued is busy, not idle; a
// disconnected one loses its queue.
func (p *Pool) retire(pl *peerLink, connected bool) bool {
	if pl.active.Swap(false) {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if connected && len(pl.queue) > 0 {
		return false
	}
	delete(p.peers, pl.peer)
	if n := drain(pl.queue); n > 0 {
		p.cfg.Stats.DroppedClosed.Add(uint64(n))
		pl.log.Debug("idle peer: dropped queued frames", "frames", n)
	}
	return true
}
