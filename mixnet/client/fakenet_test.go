package client

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/gateway"
	"github.com/nym-go/nym/mixnet/link"
	"github.com/nym-go/nym/mixnet/sphinx"
)

// fakeNet is a network small enough to reason about: a signed topology
// served over HTTP, real gateways (mixnet/gateway) with real client links,
// and mixes that are just Sphinx keys processing packets in memory, each
// packet on its own goroutine, honouring the delays. Tests can kill a mix.
// It checks the client against the gateway without the node's epoch and
// role machinery; testnet tests check the whole.
type fakeNet struct {
	t       testing.TB
	dirURL  string
	dirKey  ed25519.PublicKey
	topo    *directory.Topology
	mixes   map[[32]byte]*fakeMix
	gws     map[[32]byte]*fakeGateway
	ctx     context.Context
	wg      sync.WaitGroup
	packets atomic.Int64 // packets that entered the mixnet from a gateway

	// ordered, when set before any traffic, routes every packet on one
	// goroutine in the order the gateways hand them in: a network that
	// keeps order, for tests of it (with HopDelay 0).
	ordered bool
	mu      sync.Mutex
	queue   []fakePacket
	more    chan struct{}
}

type fakePacket struct {
	first [32]byte
	pkt   []byte
}

type fakeMix struct {
	key  *sphinx.PrivateKey
	dead atomic.Bool
}

type fakeGateway struct {
	key *sphinx.PrivateKey
	gw  *gateway.Gateway
}

func newFakeNet(t testing.TB, gateways, perLayer int) *fakeNet {
	return newFakeNetWith(t, gateways, perLayer, nil)
}

// newFakeNetWith is newFakeNet whose gateways' configuration gw may change
// (id is the gateway's identity).
func newFakeNetWith(t testing.TB, gateways, perLayer int, gw func(id directory.Key, c *gateway.Config)) *fakeNet {
	ctx, cancel := context.WithCancel(context.Background())
	f := &fakeNet{t: t, mixes: map[[32]byte]*fakeMix{}, gws: map[[32]byte]*fakeGateway{}, ctx: ctx}
	t.Cleanup(func() { cancel(); f.wg.Wait() })
	now := time.Now()
	f.topo = &directory.Topology{
		EpochStart: now.Add(-time.Minute), EpochLength: time.Hour, EpochEnd: now.Add(-time.Minute + time.Hour),
		RotationEpochs: 24, IssuedAt: now,
	}
	node := func(caps directory.Capabilities) (directory.Node, *sphinx.PrivateKey) {
		sk := sphinx.GenerateKey()
		var id directory.Key
		rand.Read(id[:])
		n := directory.Node{
			Identity: id, NoiseKey: directory.Key{1}, MixnetAddr: "127.0.0.1:1", HTTPAddr: "127.0.0.1:1",
			Capabilities: caps, Performance: 1,
			SphinxKeys: []directory.SphinxKey{{Rotation: 0, Key: sk.PublicKey()}},
		}
		return n, sk
	}
	for l := range 3 {
		for range perLayer {
			n, sk := node(directory.Capabilities{Mixnode: true})
			f.topo.Layers[l] = append(f.topo.Layers[l], n)
			f.mixes[n.Identity] = &fakeMix{key: sk}
		}
	}
	for i := range gateways {
		n, sk := node(directory.Capabilities{Entry: true, Exit: true})
		static, _ := link.GenerateKeyPair(nil)
		n.NoiseKey = static.Public
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		n.ClientsAddr = ln.Addr().String()
		cfg := gateway.Config{Static: static, DataDir: t.TempDir(), Forward: f.forward, Logger: testLogger(t)}
		if gw != nil {
			gw(n.Identity, &cfg)
		}
		g, err := gateway.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			g.Serve(ctx, ln)
			g.Close()
		}()
		if i == 0 {
			f.topo.Entry = append(f.topo.Entry, n)
		} else {
			f.topo.Exit = append(f.topo.Exit, n)
		}
		f.gws[n.Identity] = &fakeGateway{key: sk, gw: g}
	}
	priv := ed25519.NewKeyFromSeed(make([]byte, 32))
	st, err := directory.SignTopology(priv, f.topo)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(st)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != directory.PathTopology {
			http.NotFound(w, r)
			return
		}
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	f.dirURL, f.dirKey = srv.URL, priv.Public().(ed25519.PublicKey)
	return f
}

// forward is the gateways' way into the mixnet.
func (f *fakeNet) forward(first [32]byte, pkt []byte, _ bool) bool {
	f.packets.Add(1)
	if f.ordered {
		f.mu.Lock()
		f.queue = append(f.queue, fakePacket{first, pkt})
		f.mu.Unlock()
		select {
		case f.more <- struct{}{}:
		default:
		}
		return true
	}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		f.route(first, pkt)
	}()
	return true
}

// keepOrder makes f route packets in order, on one goroutine.
func (f *fakeNet) keepOrder() {
	f.ordered = true
	f.more = make(chan struct{}, 1)
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			select {
			case <-f.more:
			case <-f.ctx.Done():
				return
			}
			for {
				f.mu.Lock()
				if len(f.queue) == 0 {
					f.mu.Unlock()
					break
				}
				p := f.queue[0]
				f.queue = f.queue[1:]
				f.mu.Unlock()
				f.route(p.first, p.pkt)
			}
		}
	}()
}

// route carries one packet hop by hop until a gateway delivers it.
func (f *fakeNet) route(hop [32]byte, pkt []byte) {
	for {
		if g := f.gws[hop]; g != nil {
			p, err := g.key.Process(pkt)
			if err != nil || !p.Final {
				f.t.Errorf("fakenet: gateway cannot process a packet: %v", err)
				return
			}
			g.gw.Deliver(p)
			return
		}
		m := f.mixes[hop]
		if m == nil || m.dead.Load() {
			return
		}
		p, err := m.key.Process(pkt)
		if err != nil {
			f.t.Errorf("fakenet: mix cannot process a packet: %v", err)
			return
		}
		select {
		case <-time.After(p.Delay):
		case <-f.ctx.Done():
			return
		}
		hop, pkt = p.NextHop, p.Packet
	}
}

func (f *fakeNet) connect(t testing.TB, mod func(*Config)) *Client {
	t.Helper()
	lp := fast
	cfg := Config{DirectoryURL: f.dirURL, DirectoryKey: f.dirKey, Loopix: &lp, Logger: testLogger(t)}
	if mod != nil {
		mod(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Connect(ctx, cfg)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	waitRegistered(t, c, func() *gateway.Gateway { return f.gws[c.Address().Gateway].gw })
	return c
}
