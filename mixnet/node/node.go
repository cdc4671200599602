// Package node runs a nym-node: one process that mixes, serves clients as a
// gateway, or both in turn, as the directory assigns each epoch.
//
// Data flows one way through it: link frames in → mixer (unwrap, replay
// check, delay) → link pool out to the next hop, or, at the last hop, to the
// gateway that delivers to clients. The epoch loop keeps the topology, the
// Sphinx keys and the role current; nothing needs a restart.
package node

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nym-go/nym/anonymity"
	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/gateway"
	"github.com/nym-go/nym/mixnet/link"
	"github.com/nym-go/nym/mixnet/mixnode"
	"github.com/nym-go/nym/mixnet/nodekey"
	"github.com/nym-go/nym/mixnet/sphinx"
	"github.com/nym-go/nym/wggate"
)

// Version is reported to the directory and on the HTTP API.
const Version = "0.1.0"

// Options are the parts of a node that tests and embedders replace.
type Options struct {
	Logger *slog.Logger
	// Deliver, if set, receives every packet for which this node is the last
	// hop, instead of the gateway. Tests use it to see what arrived.
	Deliver func(p sphinx.Processed)
	// Now is the clock; nil is time.Now.
	Now func() time.Time
	// RouterKey, for an exit that runs an IP packet router, is the router's
	// client identity, announced so that VPN clients can address it.
	RouterKey *[32]byte
}

// Node is a running nym-node.
type Node struct {
	cfg  Config
	opts Options
	log  *slog.Logger
	keys *nodekey.Keys
	// network is the directory authorities; dir fetches their consensus
	// (k of n verified) and registrars register with each (register.go).
	network    *directory.Network
	dir        *directory.Client
	registrars []*directory.Client

	registry *prometheus.Registry
	metrics  *metrics
	mixer    *mixnode.Mixer
	pool     *link.Pool
	linkKey  link.KeyPair
	links    *link.Stats // shared by the pool and both link servers

	gateway *gateway.Gateway // nil for a mixnode
	trace   *tracer          // the anonymity trace (trace_file); nil when off
	issuers issuerCache      // the consensus's ticket issuers, for the gateway
	wg      *wggate.Gateway  // the WireGuard door; nil without one

	mixnetLn, httpLn, clientsLn, metricsLn net.Listener

	self  directory.Key // our identity, as topologies name it
	topo  atomic.Pointer[directory.Topology]
	prev  atomic.Pointer[prevTopology] // the epoch before topo's, during its grace
	state atomic.Pointer[roleState]

	mu         sync.Mutex
	installed  []uint64 // rotations whose Sphinx keys the mixer holds
	descriptor directory.Descriptor
}

// prevTopology is the previous epoch's topology, still honoured for routing
// until until; see Node.nextHop.
type prevTopology struct {
	t     *directory.Topology
	until time.Time
}

// roleState is what the node does this epoch.
type roleState struct {
	Epoch    uint64
	Rotation uint64
	Role     directory.Role
	Layer    int
}

// New loads keys and configuration and opens the listeners, so that a caller
// learns of a taken port before Run.
func New(cfg Config, opts Options) (_ *Node, err error) {
	cfg, err = cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	network, err := cfg.Network()
	if err != nil {
		return nil, err
	}
	keys, err := nodekey.LoadOrCreate(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	var noisePriv [32]byte
	copy(noisePriv[:], keys.Noise.Bytes())
	lk, err := link.KeyPairFromPrivate(noisePriv)
	if err != nil {
		return nil, fmt.Errorf("noise key: %w", err)
	}
	// The KEM keys rotate with the Sphinx keys: describe and installKeys
	// fill the ring (see pq.go).
	lk.KEMKeys, lk.RequirePQ = link.NewKEMKeyring(), cfg.RequirePQLinks
	id := keys.IdentityKey()
	n := &Node{
		cfg:      cfg,
		opts:     opts,
		log:      opts.Logger.With("node", base64.RawURLEncoding.EncodeToString(id[:])[:8]),
		keys:     keys,
		self:     directory.Key(id),
		network:  network,
		registry: prometheus.NewRegistry(),
		linkKey:  lk,
		links:    &link.Stats{},
	}
	if n.metrics, err = newMetrics(n.registry, n.links); err != nil {
		return nil, err
	}
	n.dir = directory.NewNetworkClient(network, &http.Client{Timeout: 10 * time.Second})
	n.dir.Now = opts.Now
	for _, a := range network.Authorities {
		n.registrars = append(n.registrars, n.dir.ForAuthority(a))
	}
	n.state.Store(&roleState{Role: directory.RoleNone})
	var traced func(uint64, [sphinx.AddressSize]byte, int)
	if cfg.TraceFile != "" {
		rec, oerr := anonymity.OpenRecorder(cfg.TracePath())
		if oerr != nil {
			return nil, oerr
		}
		// A caller that retries New (a port taken) must not find the
		// file there: it holds nothing but its header yet.
		defer func() {
			if err != nil {
				rec.Close()
				os.Remove(cfg.TracePath())
			}
		}()
		n.trace = &tracer{rec: rec, self: anonymity.IDOf(id[:]), n: n}
		traced = n.trace.out
		n.log.Warn("recording an anonymity trace: for measurement only, never in production", "file", cfg.TracePath())
	}
	n.mixer, err = mixnode.New(mixnode.Config{
		Workers:  cfg.Workers,
		QueueLen: cfg.QueueLen,
		MaxDelay: cfg.MaxDelay.Duration,

		ReplayCapacity:      uint64(cfg.ReplayCapacity),
		ReplayFPRate:        cfg.ReplayFPRate,
		ReplayDir:           cfg.ReplayDir(),
		ReplayFlushInterval: cfg.ReplayFlushInterval.Duration,
		ReplayPrefault:      cfg.ReplayPrefault,

		Forward:    n.forward,
		Deliver:    n.deliver,
		Traced:     traced,
		Logger:     n.log,
		Registerer: n.registry,
	})
	if err != nil {
		return nil, fmt.Errorf("mixer: %w", err)
	}
	if err := n.newGateway(); err != nil {
		return nil, err
	}
	if err := n.listen(); err != nil {
		n.closeListeners()
		if n.gateway != nil {
			n.gateway.Close()
		}
		return nil, err
	}
	n.newWireGuard()
	return n, nil
}

func (n *Node) listen() error {
	var err error
	if n.mixnetLn, err = net.Listen("tcp", n.cfg.MixnetListen); err != nil {
		return fmt.Errorf("mixnet listener: %w", err)
	}
	if n.httpLn, err = net.Listen("tcp", n.cfg.HTTPListen); err != nil {
		return fmt.Errorf("http listener: %w", err)
	}
	if n.cfg.MetricsListen != "" {
		if n.metricsLn, err = net.Listen("tcp", n.cfg.MetricsListen); err != nil {
			return fmt.Errorf("metrics listener: %w", err)
		}
	}
	if n.cfg.Mode != ModeMixnode {
		if n.clientsLn, err = net.Listen("tcp", n.cfg.ClientsListen); err != nil {
			return fmt.Errorf("clients listener: %w", err)
		}
	}
	return nil
}

func (n *Node) closeListeners() {
	for _, ln := range []net.Listener{n.mixnetLn, n.httpLn, n.clientsLn, n.metricsLn} {
		if ln != nil {
			ln.Close()
		}
	}
}

// NoiseKey is the public key of the node's links.
func (n *Node) NoiseKey() [32]byte { return n.linkKey.Public }

// Identity is the node's identity key: its address in Sphinx headers.
func (n *Node) Identity() [32]byte { return n.keys.IdentityKey() }

// MixnetAddr is the bound address of the node-to-node listener.
func (n *Node) MixnetAddr() string { return n.mixnetLn.Addr().String() }

// HTTPAddr is the bound HTTP API address.
func (n *Node) HTTPAddr() string { return n.httpLn.Addr().String() }

// MetricsAddr is the bound /metrics address, "" if metrics are not served.
func (n *Node) MetricsAddr() string {
	if n.metricsLn == nil {
		return ""
	}
	return n.metricsLn.Addr().String()
}

// Role is the node's role in the epoch it last saw.
func (n *Node) Role() (directory.Role, int) {
	s := n.state.Load()
	return s.Role, s.Layer
}

// Epoch is the epoch of the topology the node follows.
func (n *Node) Epoch() uint64 { return n.state.Load().Epoch }

// Run serves until ctx ends, then stops everything it started.
func (n *Node) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var err error
	n.pool, err = link.NewPool(ctx, link.PoolConfig{Config: link.Config{Static: n.linkKey, Logger: n.log, Stats: n.links, PeerKEM: n.peerKEM}})
	if err != nil {
		return fmt.Errorf("link pool: %w", err)
	}
	defer n.pool.Close()

	srv, err := link.NewServer(link.ServerConfig{
		Config:    link.Config{Static: n.linkKey, Handler: n.handleFrame, Logger: n.log, Stats: n.links},
		Authorize: n.authorizePeer,

		MaxHandshakesPerIP:  n.cfg.MaxHandshakesPerIP,
		FirstMessageTimeout: n.cfg.FirstMessageTimeout.Duration,
	})
	if err != nil {
		return fmt.Errorf("link server: %w", err)
	}

	var wg sync.WaitGroup
	errc := make(chan error, 6) // one per goroutine below, so none blocks on it
	run := func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := f()
			// Once shutdown has begun, errors are the echo of our own closing.
			if err != nil && ctx.Err() == nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("%s: %w", name, err)
				cancel()
			}
		}()
	}
	run("mixer", func() error { return n.mixer.Run(ctx) })
	run("mixnet listener", func() error { return srv.Serve(ctx, n.mixnetLn) })
	run("http", func() error { return n.serveHTTP(ctx, n.httpLn, n.apiHandler()) })
	if n.metricsLn != nil {
		run("metrics", func() error { return n.serveHTTP(ctx, n.metricsLn, n.metricsHandler()) })
	}
	run("epochs", func() error { return n.epochLoop(ctx) })
	if n.clientsLn != nil {
		run("clients listener", func() error { return n.serveClients(ctx, n.clientsLn) })
	}
	n.log.Info("node running", "mode", n.cfg.Mode, "mixnet", n.MixnetAddr(), "http", n.HTTPAddr())

	<-ctx.Done()
	n.closeListeners()
	wg.Wait()
	if n.gateway != nil {
		n.gateway.Close()
	}
	if n.wg != nil {
		n.wg.Close()
	}
	n.closeTrace()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// authorizePeer admits only nodes the current topology lists, or, during
// the boundary grace, the previous one (a node that held a layer then still
// passes us the packets it was sent then): frames from unknown peers are
// dropped with the connection.
func (n *Node) authorizePeer(static [32]byte) error {
	t := n.topo.Load()
	if t == nil {
		return errors.New("no topology yet")
	}
	if topologyHasNoiseKey(t, static) {
		return nil
	}
	if p := n.prev.Load(); p != nil && n.opts.Now().Before(p.until) && topologyHasNoiseKey(p.t, static) {
		return nil
	}
	return errors.New("not in the topology")
}

func topologyHasNoiseKey(t *directory.Topology, k [32]byte) bool {
	for _, group := range [][]directory.Node{t.Entry, t.Exit, t.Layers[0], t.Layers[1], t.Layers[2], t.Standby} {
		for i := range group {
			if group[i].NoiseKey == k {
				return true
			}
		}
	}
	return false
}

// handleFrame takes node-to-node frames off a link.
func (n *Node) handleFrame(c *link.Conn, f link.Frame) error {
	if f.Kind != link.KindPacket {
		n.metrics.dropped.WithLabelValues("unexpected_frame").Inc()
		return nil
	}
	var packet uint64
	if n.trace != nil {
		packet = n.trace.in(c.RemoteStatic(), len(f.Payload))
	}
	n.mixer.SubmitTraced(f.Payload, f.KeyParity, packet)
	return nil
}

// forward sends a packet a mix has processed to the next hop named in its
// header, if that is a node of the next layer (nextHop).
func (n *Node) forward(next [sphinx.AddressSize]byte, pkt []byte, odd bool) {
	if peer, ok := n.nextHop(directory.Key(next)); ok {
		n.sendTo(peer, pkt, odd)
	}
}

// nextHop returns the node a mix may forward to, or counts the drop.
//
// Routes are stratified: gateway → layer 1 → layer 2 → layer 3 → a gateway.
// A mix that forwarded to any listed node would let a sender skip layers,
// loop a packet through one layer, or send it back to a gateway early, each
// weakening the mixing the route is meant to get; a next hop the topology
// does not list at all would make the network a tool against third parties.
// So a layer-L mix forwards only to a layer-L+1 mix, and layer 3 only to a
// gateway (a node in the entry or exit role, or one offering a gateway: a
// client's gateway that lost its role still serves it, and the client's
// acks and SURBs go there).
//
// At an epoch boundary, packets built from the previous epoch's topology
// are still in flight: in clients' send queues and in the delays of the
// mixes before us. So a step is also allowed when it is the next layer in
// the previous epoch's topology, for layerGrace after we took up the new
// one. Each topology is judged whole (our layer and the next hop's in the
// same epoch), so the grace never allows a step neither epoch's routes take.
//
// The other side of the boundary: a sender (or the mix before us) may hold
// the next epoch's topology before we do, for the moments between the
// boundary and our fetch of it, or a little before the boundary by our
// clock if it runs behind the directory's. We cannot judge layers we have
// not seen, so from boundarySlack before our topology's epoch ends until we
// adopt the next one, a hop our topology lists is let through unjudged, as
// before stratification. Normally that is tens of milliseconds an epoch; a
// node cut off from the directory stays lenient until it hears from it.
func (n *Node) nextHop(next directory.Key) (directory.Node, bool) {
	t := n.topo.Load()
	if t == nil {
		n.metrics.dropped.WithLabelValues("no_topology").Inc()
		return directory.Node{}, false
	}
	if peer, ok := nextInStratum(t, n.self, next); ok {
		return peer, true
	}
	now := n.opts.Now()
	cur, listed := t.NodeByIdentity(next)
	if listed && !now.Before(t.EpochEnd.Add(-boundarySlack(t))) {
		return cur, true
	}
	if p := n.prev.Load(); p != nil && now.Before(p.until) {
		if peer, ok := nextInStratum(p.t, n.self, next); ok {
			return peer, true
		}
		if !listed {
			_, listed = p.t.NodeByIdentity(next)
		}
	}
	if listed {
		n.metrics.dropped.WithLabelValues("wrong_layer").Inc()
	} else {
		n.metrics.dropped.WithLabelValues("unknown_next_hop").Inc()
	}
	return directory.Node{}, false
}

// boundarySlack is how long before its epoch's end a topology stops being
// trusted to judge layers (Node.nextHop): 2 s, or a quarter of a short epoch.
func boundarySlack(t *directory.Topology) time.Duration {
	return min(2*time.Second, t.EpochLength/4)
}

// nextInStratum reports whether, in topology t, node self is a mix whose
// packets may go to next, and returns next's entry.
func nextInStratum(t *directory.Topology, self, next directory.Key) (directory.Node, bool) {
	role, layer := t.RoleOf(self)
	if role != directory.RoleMix {
		return directory.Node{}, false
	}
	peer, ok := t.NodeByIdentity(next)
	if !ok {
		return directory.Node{}, false
	}
	nextRole, nextLayer := t.RoleOf(next)
	if layer < 3 {
		return peer, nextRole == directory.RoleMix && nextLayer == layer+1
	}
	return peer, nextRole == directory.RoleEntry || nextRole == directory.RoleExit ||
		(nextRole != directory.RoleMix && peer.Capabilities.Gateway())
}

// send queues pkt on the link to the node named next, which the current
// topology must list; false if dropped.
func (n *Node) send(next [sphinx.AddressSize]byte, pkt []byte, odd bool) bool {
	t := n.topo.Load()
	if t == nil {
		n.metrics.dropped.WithLabelValues("no_topology").Inc()
		return false
	}
	peer, ok := t.NodeByIdentity(directory.Key(next))
	if !ok {
		n.metrics.dropped.WithLabelValues("unknown_next_hop").Inc()
		return false
	}
	return n.sendTo(peer, pkt, odd)
}

// sendTo queues pkt on the link to peer; false if dropped.
func (n *Node) sendTo(peer directory.Node, pkt []byte, odd bool) bool {
	if !n.pool.Send(link.Peer{Addr: peer.MixnetAddr, Static: peer.NoiseKey}, link.Frame{Kind: link.KindPacket, KeyParity: odd, Payload: pkt}) {
		n.metrics.dropped.WithLabelValues("link_queue_full").Inc()
		return false
	}
	return true
}

// deliver handles packets for which this node is the last hop.
func (n *Node) deliver(p sphinx.Processed) {
	switch {
	case n.opts.Deliver != nil:
		n.opts.Deliver(p)
	case n.gateway != nil:
		n.gateway.Deliver(p)
	default:
		n.metrics.dropped.WithLabelValues("no_gateway").Inc()
	}
}
