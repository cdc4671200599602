package client

import (
	"context"
	"crypto/ecdh"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/link"
)

// Client is a connected mixnet client. Its methods are safe for concurrent
// use.
type Client struct {
	cfg      Config
	log      *slog.Logger
	identity link.KeyPair
	priv     *ecdh.PrivateKey
	addr     Address
	dir      *directory.Client
	rnd      *randomSource
	routes   *routes

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	link      *gatewayLink
	linkStats *link.Stats

	window       window
	jobs         chan *job // new packets, in the order queued
	retries      chan *job // fragments to send again
	ready        chan *builtPacket
	covers       chan *builtPacket
	inbound      chan inbound
	messages     chan Message
	surbRequests chan surbRequest

	// linkRoom holds a token for every stream packet handed to the link
	// and not yet copied out by its writer, when the Poisson stream is off:
	// then the link's progress is the stream's clock (see directLinkWindow).
	linkRoom chan struct{}
	// doneDirect is the link.Frame.Done of such a packet: the buffer goes
	// back to the pool and the token is returned.
	doneDirect func([]byte)

	acks      *ackTracker
	reasm     *reassembler // owned by runReceive
	surbs     *surbStore
	replyKeys *replyKeyStore

	sched   *scheduler
	tickets *tickets

	stats    counters
	lastWarn atomic.Int64
}

// testHooks let tests in this package watch the client's traffic.
type testHooks struct {
	onSend    func(at time.Time, wire []byte, real bool)
	onMessage func(plaintext []byte) // every reassembled message
	// noClock starts no Poisson goroutine: the test serves the slots
	// itself, calling realTick.
	noClock bool
}

// maxReplyKeys bounds the keys kept for SURBs we handed out.
const maxReplyKeys = 100_000

// Connect fetches and verifies the topology, picks a gateway, connects to it
// and starts sending (cover traffic included, unless configured off). ctx
// bounds only the connecting; Close stops the client.
func Connect(ctx context.Context, cfg Config) (*Client, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	id, err := resolveIdentity(cfg)
	if err != nil {
		return nil, err
	}
	priv, err := ecdh.X25519().NewPrivateKey(id.Private[:])
	if err != nil {
		return nil, fmt.Errorf("client: identity: %w", err)
	}
	workers := runtime.GOMAXPROCS(0)
	c := &Client{
		cfg:          cfg,
		identity:     id,
		priv:         priv,
		dir:          newDirectoryClient(cfg),
		rnd:          newRandomSource(),
		link:         newGatewayLink(),
		linkStats:    &link.Stats{},
		window:       make(window, cfg.MaxInFlight),
		jobs:         make(chan *job, cfg.MaxInFlight),
		retries:      make(chan *job, cfg.MaxInFlight),
		ready:        make(chan *builtPacket, workers),
		covers:       make(chan *builtPacket, coverAhead(cfg.Loopix)),
		linkRoom:     make(chan struct{}, directLinkWindow),
		inbound:      make(chan inbound, 1024),
		messages:     make(chan Message, cfg.ReceiveBuffer),
		surbRequests: make(chan surbRequest, 16),
		acks:         newAckTracker(),
		reasm:        newReassembler(cfg.MaxMessageSize+messageOverheadMax, max(64<<20, 2*cfg.MaxMessageSize), cfg.ReassemblyTimeout, FragmentCapacity),
		surbs:        newSURBStore(cfg.SURBs),
		replyKeys:    newReplyKeyStore(cfg.SURBs.MaxAge, maxReplyKeys),
		tickets:      newTickets(),
	}
	c.doneDirect = func(b []byte) {
		releaseWire(b)
		<-c.linkRoom
	}
	c.routes = &routes{rnd: c.rnd, hopDelay: cfg.Loopix.HopDelay}
	c.addr.Identity = id.Public

	topo, err := c.dir.Topology(ctx)
	if cfg.ownHTTP {
		// Between refreshes (minutes apart) nothing should sit idle.
		defer cfg.HTTPClient.CloseIdleConnections()
	}
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	if err := mixLayersFilled(topo); err != nil {
		return nil, err
	}
	c.routes.topo.Store(topo)
	gw, err := chooseGateway(topo, cfg.Gateway, c.rnd)
	if err != nil {
		return nil, err
	}
	c.addr.Gateway = gw.Identity
	c.routes.own.Store(&gw)
	c.log = cfg.Logger.With("client", c.addr.String()[:8])

	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.sched = newScheduler(c)
	conn, err := c.dial(ctx)
	if err != nil {
		c.cancel()
		return nil, err
	}
	c.link.set(conn)
	// The gateway's first word says whether it must be paid: pay it (and
	// keep paying it) before anything is sent.
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.runTickets(c.ctx)
	}()
	if err := c.payGateway(ctx, conn); err != nil {
		c.cancel()
		conn.Close()
		c.wg.Wait()
		return nil, err
	}
	c.log.Info("connected", "address", c.addr, "gateway_addr", gw.ClientsAddr, "epoch", topo.Epoch)

	c.start(conn, workers)
	return c, nil
}

func (c *Client) start(conn *link.Conn, workers int) {
	run := func(f func(context.Context)) {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			f(c.ctx)
		}()
	}
	run(func(ctx context.Context) { c.runLink(ctx, conn) })
	run(c.runTopology)
	run(c.runReceive)
	run(c.runAcks)
	run(c.runSURBRequests)
	for range workers {
		run(c.runBuilder)
	}
	lp := c.cfg.Loopix
	if h := c.cfg.hooks; h != nil && h.noClock {
		return
	}
	if lp.SendInterval > 0 {
		run(func(ctx context.Context) { runPoisson(ctx, lp.SendInterval, c.rnd, c.realTick) })
	} else {
		run(c.runDirect)
	}
	if lp.CoverInterval > 0 {
		run(func(ctx context.Context) { runPoisson(ctx, lp.CoverInterval, c.rnd, c.coverTick) })
	}
	if lp.ExtendedCoverInterval > 0 {
		run(func(ctx context.Context) { runPoisson(ctx, lp.ExtendedCoverInterval, c.rnd, c.extendedCoverTick) })
	}
	if lp.SendInterval > 0 || lp.CoverInterval > 0 {
		// One builder falls behind 500 slots/s (a cover packet is nine
		// ladders), and the slots it misses build their cover on the
		// clock's goroutine, which delays every later slot.
		for range workers {
			run(c.runCoverBuilder)
		}
	}
}

// mixLayersFilled reports whether t has a mix in every layer. Unlike
// Topology.Routable it does not ask for exit gateways, which a client that
// talks to other clients does not need.
func mixLayersFilled(t *directory.Topology) error {
	for l := range t.Layers {
		if len(t.Layers[l]) == 0 {
			return fmt.Errorf("client: %w: epoch %d has no mix in layer %d", ErrNoRoute, t.Epoch, l+1)
		}
	}
	return nil
}

func resolveIdentity(cfg Config) (link.KeyPair, error) {
	switch {
	case cfg.Identity != nil:
		kp, err := link.KeyPairFromPrivate(cfg.Identity.Private)
		if err != nil || kp.Public != cfg.Identity.Public {
			return link.KeyPair{}, errors.New("client: Config.Identity: public key does not match the private key")
		}
		return kp, nil
	case cfg.IdentityFile != "":
		return LoadOrCreateIdentity(cfg.IdentityFile)
	}
	kp, err := link.GenerateKeyPair(nil)
	if err != nil {
		return link.KeyPair{}, fmt.Errorf("client: identity: %w", err)
	}
	return kp, nil
}

// chooseGateway returns the configured gateway, or an entry gateway at
// random, weighted by performance.
func chooseGateway(t *directory.Topology, want directory.Key, rnd *randomSource) (directory.Node, error) {
	if !want.IsZero() {
		n, ok := t.NodeByIdentity(want)
		if !ok {
			return directory.Node{}, fmt.Errorf("client: gateway %s is not in the topology of epoch %d", want, t.Epoch)
		}
		if n.ClientsAddr == "" {
			return directory.Node{}, fmt.Errorf("client: node %s serves no clients", want)
		}
		return n, nil
	}
	var total float64
	for _, n := range t.Entry {
		total += max(n.Performance, minWeight)
	}
	x := rnd.float64() * total
	for _, n := range t.Entry {
		w := max(n.Performance, minWeight)
		if x < w {
			return n, nil
		}
		x -= w
	}
	if len(t.Entry) == 0 {
		return directory.Node{}, fmt.Errorf("client: epoch %d has no entry gateways", t.Epoch)
	}
	return t.Entry[len(t.Entry)-1], nil
}

// closeFlushTimeout bounds how long Close waits for packets already handed
// to the gateway connection to reach the socket.
const closeFlushTimeout = time.Second

// Close stops the client: its goroutines end and the gateway connection
// closes. Packets already sent go out first (a goodbye is often the last
// thing a caller sends: Flush, then Close); packets still queued for a
// Poisson slot are dropped. The Receive channel is closed.
func (c *Client) Close() error {
	if conn := c.link.current(); conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), closeFlushTimeout)
		conn.Flush(ctx)
		cancel()
	}
	c.sched.close()
	c.cancel()
	c.wg.Wait()
	if c.cfg.ownHTTP {
		c.cfg.HTTPClient.CloseIdleConnections()
	}
	return nil
}

// Address is this client's address, to give to those who send to it.
func (c *Client) Address() Address { return c.addr }

// Identity is the client's key pair, for callers that want to persist a
// generated one.
func (c *Client) Identity() link.KeyPair { return c.identity }

// Offline is how long the client has been without a connection to its
// gateway, reconnecting; 0 while connected. A caller that can move to
// another gateway (the VPN) uses it to give up on a dead one quickly,
// rather than wait for its own traffic to time out.
func (c *Client) Offline() time.Duration { return c.link.offline(time.Now()) }

// Receive returns the channel of received messages. They come in no
// particular order: mixing reorders packets, and so messages. The
// application must keep reading: when the channel is full, reception stalls
// (acks included). Close closes it.
func (c *Client) Receive() <-chan Message { return c.messages }

// Flush waits until every fragment sent so far has been acknowledged or given
// up, and every other queued packet sent.
func (c *Client) Flush(ctx context.Context) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for len(c.window) > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("client: flush: %d packets in flight: %w", len(c.window), ctx.Err())
		case <-c.ctx.Done():
			return errClosed
		case <-t.C:
		}
	}
	return nil
}

var errClosed = errors.New("client: closed")

// dropStaleSURBs forgets the SURBs we hold that were built for the previous
// key rotation, once t is past that rotation's overlap (its first epoch, when
// nodes still hold the old key). Spending one would lose the reply.
func (c *Client) dropStaleSURBs(t *directory.Topology) {
	if t.RotationEpochs == 0 || t.Epoch%t.RotationEpochs == 0 {
		return // no rotations, or the overlap: both parities work
	}
	if n := c.surbs.dropParity(uint8((t.Rotation + 1) & 1)); n > 0 {
		c.stats.surbsDropped.Add(uint64(n))
		c.log.Debug("dropped SURBs of the previous key rotation", "surbs", n, "rotation", t.Rotation)
	}
}

// runTopology refreshes the topology at each epoch end and at least every
// TopologyRefresh, so routes follow the nodes the directory lists.
func (c *Client) runTopology(ctx context.Context) {
	failures := 0
	for {
		wait := c.cfg.TopologyRefresh
		if t := c.routes.topo.Load(); t != nil {
			// Just past the boundary, give or take, so that clients do
			// not all ask at the same instant.
			untilEnd := time.Until(t.EpochEnd) + jitter(time.Second, c.rnd)
			wait = max(min(wait, untilEnd), time.Second)
		}
		if failures > 0 {
			wait = min(time.Duration(failures)*2*time.Second, time.Minute)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		t, err := c.dir.Topology(fctx)
		cancel()
		if c.cfg.ownHTTP {
			c.cfg.HTTPClient.CloseIdleConnections()
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			c.log.Warn("topology refresh failed", "err", err)
			continue
		}
		failures = 0
		if old := c.routes.topo.Load(); old != nil && t.IssuedAt.Before(old.IssuedAt) {
			continue // never go back to an older topology
		}
		c.routes.topo.Store(t)
		c.routes.health.forget(t)
		c.dropStaleSURBs(t)
		if err := mixLayersFilled(t); err != nil {
			c.log.Warn("cannot route through the new topology", "err", err)
		}
	}
}

// newDirectoryClient fetches the consensus of cfg.Network, k of n verified,
// or the topology of the one directory cfg names.
func newDirectoryClient(cfg Config) *directory.Client {
	if cfg.Network == nil {
		return &directory.Client{BaseURL: cfg.DirectoryURL, Key: cfg.DirectoryKey, HTTP: cfg.HTTPClient}
	}
	dc := directory.NewNetworkClient(cfg.Network, cfg.HTTPClient)
	dc.CachePath = cfg.ConsensusCache
	return dc
}
