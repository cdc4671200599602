// Package testnet runs a whole mixnet inside a test: a directory and nodes on
// loopback sockets, each with its own data directory, all real (real keys,
// Noise links, Sphinx processing, epochs). Tests of the node, the gateway and
// the client build on it.
package testnet

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nym-go/nym/mixnet/authority"
	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/node"
	"github.com/nym-go/nym/mixnet/sphinx"
)

// Options shape the network. Zero values take the defaults noted.
type Options struct {
	Mixnodes int // mixnode-mode nodes; default 3
	Entries  int // entry-gateway nodes; default 1
	Exits    int // exit-gateway nodes; default 1
	Auto     int // auto-mode nodes; default 0

	// Authorities is how many directory authorities run; default 1, a
	// plain directory (no network file). With more, they form a network
	// of Threshold (default: a majority) that votes a consensus each
	// epoch, and the nodes are given its network file.
	Authorities int
	Threshold   int

	EpochLength    time.Duration // default 1 h: no epoch passes during a short test (network: 4 s, longer on a loaded machine, see networkEpoch)
	RotationEpochs uint64        // default 24
	LayerSize      int           // mix nodes per layer; default 1, so extra mixnodes stand by
	MaxEntries     int           // default 1
	MaxExits       int           // default 1

	// Deliver, if set, sees every packet a node receives as its last hop,
	// with the index of that node.
	Deliver func(node int, p sphinx.Processed)
	// RouterKey, if set, is announced by exit-gateway nodes as their IP
	// packet router's client identity (the router itself is the test's).
	RouterKey *[32]byte
	// Logger for every component; default discards.
	Logger *slog.Logger
	// EditNode, if set, may change each node's configuration before it
	// starts, the nodes Start makes included.
	EditNode func(c *node.Config)
	// Tickets turns the authorities' ticket issuance on. Off by default:
	// an authority issuing tickets makes its RSA issuer keys in the
	// background at start, about a second of CPU each, which a test that
	// uses no tickets should not spend on a busy machine.
	Tickets bool
}

// Net is a running network.
type Net struct {
	t    testing.TB
	opts Options

	// DirectoryURL, DirectoryKey and Directory are the first authority's.
	DirectoryURL string
	DirectoryKey ed25519.PublicKey
	Directory    *authority.Server

	// Network names every authority; with Options.Authorities > 1 it is
	// written to NetworkFile, which the nodes are given.
	Network     *directory.Network
	NetworkFile string
	authorities []*runningAuthority
	// authorityDirs are the authorities' data directories, in order.
	authorityDirs []string

	mu    sync.Mutex
	nodes []*Node
}

// Node is one node of the network.
type Node struct {
	Index  int
	Config node.Config
	*node.Node
	cancel context.CancelFunc
	done   chan error
	ran    bool // has run: its addresses are known to the directory
}

// Running reports whether the node is up.
func (n *Node) Running() bool { return n.Node != nil }

// Start brings the network up and waits until its topology is routable and
// every node has taken its role. Everything stops when the test ends.
func Start(t testing.TB, o Options) *Net {
	t.Helper()
	if o.Mixnodes == 0 && o.Auto == 0 {
		o.Mixnodes = 3
	}
	if o.Entries == 0 && o.Auto == 0 {
		o.Entries = 1
	}
	if o.Exits == 0 && o.Auto == 0 {
		o.Exits = 1
	}
	if o.Authorities == 0 {
		o.Authorities = 1
	}
	if o.Threshold == 0 {
		o.Threshold = o.Authorities/2 + 1
	}
	if o.EpochLength == 0 {
		o.EpochLength = time.Hour
		if o.Authorities > 1 {
			o.EpochLength = networkEpoch()
		}
	}
	if o.RotationEpochs == 0 {
		o.RotationEpochs = 24
	}
	if o.LayerSize == 0 {
		o.LayerSize = 1
	}
	if o.MaxEntries == 0 {
		o.MaxEntries = 1
	}
	if o.MaxExits == 0 {
		o.MaxExits = 1
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	n := &Net{t: t, opts: o}
	if o.Authorities > 1 {
		n.startAuthorities()
	} else {
		n.startDirectory()
	}

	modes := []node.Mode{}
	for range o.Mixnodes {
		modes = append(modes, node.ModeMixnode)
	}
	for range o.Entries {
		modes = append(modes, node.ModeEntryGateway)
	}
	for range o.Exits {
		modes = append(modes, node.ModeExitGateway)
	}
	for range o.Auto {
		modes = append(modes, node.ModeAuto)
	}
	for _, m := range modes {
		n.addNode(m)
	}
	n.WaitRoutable(n.startTimeout())
	return n
}

// startTimeout bounds the wait for a new network to route. A network of
// authorities lists a node in the consensus voted the epoch after it
// registered, and an epoch whose vote window a busy authority misses has
// no consensus: the bound counts epochs, not seconds.
func (n *Net) startTimeout() time.Duration {
	if n.opts.Authorities > 1 {
		return max(30*time.Second, 10*n.opts.EpochLength)
	}
	return 30 * time.Second
}

func (n *Net) startDirectory() {
	t := n.t
	probe := max(n.opts.EpochLength/20, 20*time.Millisecond)
	probe = min(probe, 200*time.Millisecond)
	n.authorityDirs = []string{t.TempDir()}
	srv, err := authority.NewServer(authority.Config{
		DataDir:        n.authorityDirs[0],
		EpochLength:    n.opts.EpochLength,
		RotationEpochs: n.opts.RotationEpochs,
		ProbeInterval:  probe,
		// Generous: -race slows everything, and a slow probe is not a dead
		// node. At load ~20 on 2 cores (-race) 2 s probes timed out twice in
		// a row, the node lost its role and its layer emptied: the timeout
		// grows with the load.
		ProbeTimeout: LoadScaled(2 * time.Second),
		Limits:       authority.Limits{MaxEntries: n.opts.MaxEntries, MaxExits: n.opts.MaxExits, LayerSize: n.opts.LayerSize},
		Logger:       n.opts.Logger.With("component", "directory"),
		// Every node is on 127.0.0.1: no per-address or per-/24 seat limit.
		Admission: authority.Admission{MaxSeatsPerAddress: -1, MaxSeatsPerPrefix: -1},
		// The monitor's test loops would land in a test's Deliver hook.
		Monitor: authority.Monitor{Loops: monitorLoops(n.opts.Deliver != nil)},
		Tickets: authority.Tickets{Disabled: !n.opts.Tickets},
	})
	if err != nil {
		t.Fatalf("testnet: directory: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	hs := &http.Server{Handler: srv}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); hs.Serve(ln) }()
	go func() { defer wg.Done(); srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		hs.Close()
		wg.Wait()
		srv.Close()
	})
	n.Directory = srv
	n.DirectoryURL = "http://" + ln.Addr().String()
	n.DirectoryKey = srv.PublicKey()
	n.Network = directory.SingleAuthority(n.DirectoryURL, directory.Key(n.DirectoryKey))
}

// AddNode starts one more node in mode m and returns it once it runs. Edit,
// if given, may change its configuration first.
func (n *Net) AddNode(m node.Mode, edit ...func(*node.Config)) *Node {
	return n.addNode(m, edit...)
}

func (n *Net) addNode(m node.Mode, edit ...func(*node.Config)) *Node {
	t := n.t
	n.mu.Lock()
	i := len(n.nodes)
	cfg := node.DefaultConfig()
	cfg.DataDir = filepath.Join(t.TempDir(), fmt.Sprintf("node%d", i))
	cfg.Mode = m
	if n.NetworkFile != "" {
		cfg.NetworkFile = n.NetworkFile
	} else {
		cfg.DirectoryURL = n.DirectoryURL
		cfg.DirectoryKey = base64.RawURLEncoding.EncodeToString(n.DirectoryKey)
	}
	cfg.MixnetListen = freeAddr(t)
	cfg.HTTPListen = freeAddr(t)
	cfg.ClientsListen = freeAddr(t)
	cfg.MetricsListen = freeAddr(t)
	cfg.RefreshPeriod = node.Duration{Duration: 200 * time.Millisecond}
	// A million tags is far more than any test sends, and keeps each
	// node's replay filter (and its save at shutdown) at a few MB rather
	// than a real node's 167.
	cfg.ReplayCapacity = 1_000_000
	if n.opts.EditNode != nil {
		n.opts.EditNode(&cfg)
	}
	for _, e := range edit {
		e(&cfg)
	}
	nd := &Node{Index: i, Config: cfg}
	n.nodes = append(n.nodes, nd)
	n.mu.Unlock()
	n.StartNode(i)
	return nd
}

// Exit returns the first running exit-gateway node, or nil.
func (n *Net) Exit() *Node {
	for _, nd := range n.Nodes() {
		if nd.Running() && nd.Config.Mode == node.ModeExitGateway {
			return nd
		}
	}
	return nil
}

// Nodes returns the nodes, running or not.
func (n *Net) Nodes() []*Node {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]*Node(nil), n.nodes...)
}

// StartNode (re)starts node i on its data directory and ports.
func (n *Net) StartNode(i int) {
	t := n.t
	n.mu.Lock()
	nd := n.nodes[i]
	n.mu.Unlock()
	if nd.Running() {
		return
	}
	opts := node.Options{Logger: n.opts.Logger.With("node", i)}
	if nd.Config.Mode == node.ModeExitGateway {
		opts.RouterKey = n.opts.RouterKey
	}
	if n.opts.Deliver != nil {
		opts.Deliver = func(p sphinx.Processed) { n.opts.Deliver(i, p) }
	}
	var nn *node.Node
	var err error
	// A port just released can take a moment to be free again.
	deadline := time.Now().Add(5 * time.Second)
	for {
		nn, err = node.New(nd.Config, opts)
		if err == nil || time.Now().After(deadline) {
			break
		}
		if !nd.ran && errors.Is(err, syscall.EADDRINUSE) {
			// Another test's process took a port between freeAddr and
			// now. A node that never ran has announced no address, so
			// it may as well take others.
			nd.Config.MixnetListen, nd.Config.HTTPListen, nd.Config.ClientsListen = freeAddr(t), freeAddr(t), freeAddr(t)
			nd.Config.MetricsListen = freeAddr(t)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("testnet: node %d: %v", i, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- nn.Run(ctx) }()
	n.mu.Lock()
	nd.Node, nd.cancel, nd.done, nd.ran = nn, cancel, done, true
	n.mu.Unlock()
	t.Cleanup(func() { n.StopNode(i) })
}

// StopNode stops node i and waits for it to finish.
func (n *Net) StopNode(i int) {
	n.mu.Lock()
	nd := n.nodes[i]
	cancel, done := nd.cancel, nd.done
	nd.Node, nd.cancel, nd.done = nil, nil, nil
	n.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	if err := <-done; err != nil {
		n.t.Errorf("testnet: node %d stopped with %v", i, err)
	}
}

// Topology fetches and verifies the current topology as a client would.
func (n *Net) Topology() (*directory.Topology, error) {
	c := directory.NewNetworkClient(n.Network, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.Topology(ctx)
}

// WaitRoutable waits until the topology has every role filled and every
// running node has reached its epoch and taken up its role.
func (n *Net) WaitRoutable(timeout time.Duration) *directory.Topology {
	n.t.Helper()
	t, err := n.Routable(timeout)
	if err != nil {
		n.t.Fatalf("testnet: %v", err)
	}
	return t
}

// Routable is WaitRoutable that reports a timeout instead of failing the test.
func (n *Net) Routable(timeout time.Duration) (*directory.Topology, error) {
	var last error
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		t, err := n.Topology()
		if err == nil {
			if err = t.Routable(); err == nil {
				if err = n.nodesFollow(t); err == nil {
					return t, nil
				}
			}
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	return nil, fmt.Errorf("network not routable after %v: %v", timeout, last)
}

func (n *Net) nodesFollow(t *directory.Topology) error {
	for _, nd := range n.Nodes() {
		if !nd.Running() {
			continue
		}
		if e := nd.Epoch(); e < t.Epoch {
			return fmt.Errorf("node %d is at epoch %d, topology at %d", nd.Index, e, t.Epoch)
		}
		want, layer := t.RoleOf(directory.Key(nd.Identity()))
		got, gotLayer := nd.Role()
		if want != got || layer != gotLayer {
			return fmt.Errorf("node %d has role %v/%d, topology says %v/%d", nd.Index, got, gotLayer, want, layer)
		}
	}
	return nil
}

// Route builds a Sphinx route through one node of each mix layer to the
// topology's first node in role last (Entry or Exit), with the given delay
// at every hop, using the rotation's keys.
func Route(t *directory.Topology, last directory.Role, delay time.Duration) ([]sphinx.Hop, error) {
	var hops []sphinx.Hop
	for l := range t.Layers {
		if len(t.Layers[l]) == 0 {
			return nil, fmt.Errorf("layer %d is empty", l+1)
		}
		hops = append(hops, hop(t, t.Layers[l][0], delay))
	}
	group := t.Exit
	if last == directory.RoleEntry {
		group = t.Entry
	}
	if len(group) == 0 {
		return nil, errors.New("no gateway for the last hop")
	}
	return append(hops, hop(t, group[0], 0)), nil
}

func hop(t *directory.Topology, nd directory.Node, delay time.Duration) sphinx.Hop {
	key, _ := nd.SphinxKeyFor(t.Rotation)
	return sphinx.Hop{Address: [32]byte(nd.Identity), Key: [32]byte(key), Delay: delay}
}

func freeAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// monitorLoops turns the directory's network monitor off (-1) for networks
// whose last-hop packets go to a test's Deliver hook, and leaves the
// default (0) otherwise.
func monitorLoops(hooked bool) int {
	if hooked {
		return -1
	}
	return 0
}
