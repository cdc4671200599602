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
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/gateway"
	"github.com/nym-go/nym/mixnet/link"
	"github.com/nym-go/nym/mixnet/mixnode"
	"github.com/nym-go/nym/mixnet/nodekey"
	"github.com/nym-go/nym/mixnet/sphinx"
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
	dir  *directory.Client

	registry *prometheus.Registry
	metrics  *metrics
	mixer    *mixnode.Mixer
	pool     *link.Pool
	linkKey  link.KeyPair
	links    *link.Stats // shared by the pool and both link servers

	gateway *gateway.Gateway // nil for a mixnode

	mixnetLn, httpLn, clientsLn net.Listener

	topo  atomic.Pointer[directory.Topology]
	state atomic.Pointer[roleState]

	mu         sync.Mutex
	installed  []uint64 // rotations whose keys the mixer holds
	descriptor directory.Descriptor
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
func New(cfg Config, opts Options) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	dirKey, err := base64.RawURLEncoding.DecodeString(cfg.DirectoryKey)
	if err != nil || len(dirKey) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("directory key %q: not a base64url ed25519 public key", cfg.DirectoryKey)
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
	lk.KEM, lk.RequirePQ = keys.KEM, cfg.RequirePQLinks // see pq.go
	id := keys.IdentityKey()
	n := &Node{
		cfg:      cfg,
		opts:     opts,
		log:      opts.Logger.With("node", base64.RawURLEncoding.EncodeToString(id[:])[:8]),
		keys:     keys,
		dir:      &directory.Client{BaseURL: cfg.DirectoryURL, Key: ed25519.PublicKey(dirKey), HTTP: &http.Client{Timeout: 10 * time.Second}},
		registry: prometheus.NewRegistry(),
		linkKey:  lk,
		links:    &link.Stats{},
	}
	n.metrics = newMetrics(n.registry)
	n.registry.MustRegister(newLinkCollector(n.links))
	n.state.Store(&roleState{Role: directory.RoleNone})
	n.mixer, err = mixnode.New(mixnode.Config{
		Workers:  cfg.Workers,
		QueueLen: cfg.QueueLen,
		MaxDelay: cfg.MaxDelay.Duration,

		ReplayCapacity:      uint64(cfg.ReplayCapacity),
		ReplayFPRate:        cfg.ReplayFPRate,
		ReplayDir:           cfg.ReplayDir(),
		ReplayFlushInterval: cfg.ReplayFlushInterval.Duration,

		Forward:    n.forward,
		Deliver:    n.deliver,
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
	if n.cfg.Mode != ModeMixnode {
		if n.clientsLn, err = net.Listen("tcp", n.cfg.ClientsListen); err != nil {
			return fmt.Errorf("clients listener: %w", err)
		}
	}
	return nil
}

func (n *Node) closeListeners() {
	for _, ln := range []net.Listener{n.mixnetLn, n.httpLn, n.clientsLn} {
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
	})
	if err != nil {
		return fmt.Errorf("link server: %w", err)
	}

	httpSrv := &http.Server{Handler: n.apiHandler(), ReadHeaderTimeout: 5 * time.Second}

	var wg sync.WaitGroup
	errc := make(chan error, 5) // one per goroutine below, so none blocks on it
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
	run("http", func() error { return httpSrv.Serve(n.httpLn) })
	run("epochs", func() error { return n.epochLoop(ctx) })
	if n.clientsLn != nil {
		run("clients listener", func() error { return n.serveClients(ctx, n.clientsLn) })
	}
	n.log.Info("node running", "mode", n.cfg.Mode, "mixnet", n.MixnetAddr(), "http", n.HTTPAddr())

	<-ctx.Done()
	shutdown, stop := context.WithTimeout(context.Background(), 5*time.Second)
	httpSrv.Shutdown(shutdown)
	stop()
	n.closeListeners()
	wg.Wait()
	if n.gateway != nil {
		n.gateway.Close()
	}
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// authorizePeer admits only nodes the current topology lists: frames from
// unknown peers are dropped with the connection.
func (n *Node) authorizePeer(static [32]byte) error {
	t := n.topo.Load()
	if t == nil {
		return errors.New("no topology yet")
	}
	if !topologyHasNoiseKey(t, static) {
		return errors.New("not in the topology")
	}
	return nil
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
func (n *Node) handleFrame(_ *link.Conn, f link.Frame) error {
	if f.Kind != link.KindPacket {
		n.metrics.dropped.WithLabelValues("unexpected_frame").Inc()
		return nil
	}
	n.mixer.Submit(f.Payload, f.KeyParity)
	return nil
}

// forward sends a packet to the next hop named in its header. A next hop
// the topology does not list is refused: forwarding to arbitrary addresses
// would make the network a tool against third parties.
func (n *Node) forward(next [sphinx.AddressSize]byte, pkt []byte, odd bool) {
	n.send(next, pkt, odd)
}

// send queues pkt on the link to the node named next; false if dropped.
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
