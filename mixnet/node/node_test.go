package node_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nym-go/nym/internal/poll"
	"github.com/nym-go/nym/internal/testnet"
	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/gatewire"
	"github.com/nym-go/nym/mixnet/link"
	"github.com/nym-go/nym/mixnet/node"
	"github.com/nym-go/nym/mixnet/nodekey"
	"github.com/nym-go/nym/mixnet/sphinx"
)

// inbox collects what last hops deliver.
type inbox struct {
	mu  sync.Mutex
	got map[int][][]byte // by node index
}

func (b *inbox) deliver(node int, p sphinx.Processed) {
	msg, err := sphinx.OpenPayload(p.Payload)
	if err != nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.got == nil {
		b.got = map[int][][]byte{}
	}
	b.got[node] = append(b.got[node], bytes.Clone(msg))
}

func (b *inbox) count(node int, msg []byte) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, m := range b.got[node] {
		if bytes.Equal(m, msg) {
			n++
		}
	}
	return n
}

// injector sends packets into a layer-1 node over a real Noise link, posing
// as the entry gateway (whose Noise key the layer-1 node admits).
type injector struct {
	conn *link.Conn
}

func newInjector(t *testing.T, net *testnet.Net, topo *directory.Topology) *injector {
	t.Helper()
	var entry *testnet.Node
	for _, nd := range net.Nodes() {
		if !nd.Running() {
			continue
		}
		if role, _ := topo.RoleOf(directory.Key(nd.Identity())); role == directory.RoleEntry {
			entry = nd
		}
	}
	if entry == nil {
		t.Fatalf("no running node holds the entry role: entry %v", topo.Entry)
	}
	keys, err := nodekey.Load(entry.Config.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	var priv [32]byte
	copy(priv[:], keys.Noise.Bytes())
	kp, _ := link.KeyPairFromPrivate(priv)
	l1 := topo.Layers[0][0]
	c, err := link.Dial(context.Background(), l1.MixnetAddr, l1.NoiseKey, link.Config{Static: kp})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return &injector{conn: c}
}

func (in *injector) send(t *testing.T, topo *directory.Topology, pkt []byte) {
	t.Helper()
	if !in.conn.Send(link.Frame{Kind: link.KindPacket, KeyParity: topo.Rotation%2 == 1, Payload: pkt}) {
		t.Fatal("link queue full")
	}
}

func exitIndex(t *testing.T, n *testnet.Net, topo *directory.Topology) int {
	for _, nd := range n.Nodes() {
		if !nd.Running() {
			continue
		}
		if role, _ := topo.RoleOf(directory.Key(nd.Identity())); role == directory.RoleExit {
			return nd.Index
		}
	}
	t.Fatal("no exit in topology")
	return -1
}

func metric(t *testing.T, nd *testnet.Node, name string) string {
	t.Helper()
	resp, err := http.Get("http://" + nd.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var lines []string
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, name) {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}

func TestNetworkThroughThreeLayers(t *testing.T) {
	var box inbox
	n := testnet.Start(t, testnet.Options{Deliver: box.deliver})
	topo := n.WaitRoutable(10 * time.Second)
	for l, layer := range topo.Layers {
		if len(layer) != 1 {
			t.Fatalf("layer %d has %d nodes", l+1, len(layer))
		}
	}
	if len(topo.Entry) != 1 || len(topo.Exit) != 1 {
		t.Fatalf("entry %d exit %d", len(topo.Entry), len(topo.Exit))
	}
	exit := exitIndex(t, n, topo)
	in := newInjector(t, n, topo)
	route, err := testnet.Route(topo, directory.RoleExit, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("intact", func(t *testing.T) {
		for i := range 20 {
			msg := []byte(fmt.Sprintf("packet %d through three layers", i))
			pkt, err := sphinx.NewPacket(route, sphinx.Destination{}, msg, sphinx.SizeRegular)
			if err != nil {
				t.Fatal(err)
			}
			in.send(t, topo, pkt)
			poll.Until(t, 5*time.Second, "delivery", func() bool { return box.count(exit, msg) == 1 })
		}
	})

	t.Run("replay dropped", func(t *testing.T) {
		msg := []byte("only once")
		pkt, _ := sphinx.NewPacket(route, sphinx.Destination{}, msg, sphinx.SizeRegular)
		in.send(t, topo, bytes.Clone(pkt))
		poll.Until(t, 5*time.Second, "first copy", func() bool { return box.count(exit, msg) == 1 })
		in.send(t, topo, pkt)
		l1 := nodeByID(n, topo.Layers[0][0].Identity)
		poll.Until(t, 5*time.Second, "replay counted at layer 1", func() bool {
			return strings.Contains(metric(t, l1, "nym_mixnode_packets_dropped_total"), `reason="replay"} 1`)
		})
		if c := box.count(exit, msg); c != 1 {
			t.Fatalf("delivered %d times", c)
		}
	})

	t.Run("tampered dropped", func(t *testing.T) {
		msg := []byte("tampered")
		pkt, _ := sphinx.NewPacket(route, sphinx.Destination{}, msg, sphinx.SizeRegular)
		pkt[100] ^= 1
		in.send(t, topo, pkt)
		l1 := nodeByID(n, topo.Layers[0][0].Identity)
		poll.Until(t, 5*time.Second, "tampered packet counted", func() bool {
			return strings.Contains(metric(t, l1, "nym_mixnode_packets_dropped_total"), `reason="bad_packet"} 1`)
		})
		if c := box.count(exit, msg); c != 0 {
			t.Fatalf("tampered packet delivered %d times", c)
		}
	})

	t.Run("garbage on every port", func(t *testing.T) {
		for _, nd := range n.Nodes() {
			for _, addr := range []string{nd.Config.MixnetListen, nd.Config.HTTPListen, nd.Config.ClientsListen} {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					continue // a mixnode has no clients port
				}
				junk := make([]byte, 4096)
				rand.Read(junk)
				c.Write(junk)
				c.Close()
			}
		}
		msg := []byte("still serving")
		pkt, _ := sphinx.NewPacket(route, sphinx.Destination{}, msg, sphinx.SizeRegular)
		in.send(t, topo, pkt)
		poll.Until(t, 5*time.Second, "delivery after garbage", func() bool { return box.count(exit, msg) == 1 })
	})
}

func nodeByID(n *testnet.Net, id directory.Key) *testnet.Node {
	for _, nd := range n.Nodes() {
		if nd.Running() && directory.Key(nd.Identity()) == id {
			return nd
		}
	}
	return nil
}

// A topology signed by a key other than the pinned one is refused, by a
// fetcher and by a node, which then takes no role and admits no peer.
func TestForeignTopologyRefused(t *testing.T) {
	n := testnet.Start(t, testnet.Options{})
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	c := directory.Client{BaseURL: n.DirectoryURL, Key: other}
	if _, err := c.Topology(context.Background()); !errors.Is(err, directory.ErrUntrustedDirectory) {
		t.Fatalf("fetcher with another pinned key: err = %v", err)
	}

	misled := n.AddNode(node.ModeMixnode, func(c *node.Config) {
		c.DirectoryKey = base64.RawURLEncoding.EncodeToString(other)
	})
	// It registers (the directory accepts its descriptor), but never trusts
	// the topology it is sent.
	poll.Until(t, 10*time.Second, "the misled node to register", func() bool {
		resp, err := http.Get("http://" + misled.HTTPAddr() + "/api/v1/description")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(body), `"mixnet_addr":"127.0.0.1`)
	})
	time.Sleep(time.Second) // several refresh periods
	if role, _ := misled.Role(); role != directory.RoleNone || misled.Epoch() != 0 {
		t.Fatalf("node with a foreign directory key took role %v at epoch %d", role, misled.Epoch())
	}
	topo := n.WaitRoutable(10 * time.Second)
	entryKeys, _ := nodekey.Load(nodeByID(n, topo.Entry[0].Identity).Config.DataDir)
	var priv [32]byte
	copy(priv[:], entryKeys.Noise.Bytes())
	kp, _ := link.KeyPairFromPrivate(priv)
	conn, err := link.Dial(context.Background(), misled.Config.MixnetListen, misled.NoiseKey(), link.Config{Static: kp})
	if err == nil {
		select {
		case <-conn.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("a node without a trusted topology kept a peer connected")
		}
	}
}

func TestRestartKeepsIdentity(t *testing.T) {
	n := testnet.Start(t, testnet.Options{})
	nd := n.Nodes()[0]
	before := nd.Identity()
	n.StopNode(0)
	n.StartNode(0)
	if after := n.Nodes()[0].Identity(); after != before {
		t.Fatal("a restarted node has a new identity")
	}
	n.WaitRoutable(10 * time.Second)
}

// dialEntry connects to the entry gateway as a new client, over a link the
// test closes.
func dialEntry(t *testing.T, topo *directory.Topology) (link.KeyPair, *link.Conn) {
	t.Helper()
	entry := topo.Entry[0]
	me, _ := link.GenerateKeyPair(rand.Reader)
	c, err := link.Dial(context.Background(), entry.ClientsAddr, [32]byte(entry.NoiseKey), link.Config{Static: me})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return me, c
}

// A client's packet goes in at the entry gateway, which forwards it unopened
// to layer 1; it crosses the three layers and reaches the exit.
func TestClientThroughEntryGateway(t *testing.T) {
	var box inbox
	n := testnet.Start(t, testnet.Options{Deliver: box.deliver})
	topo := n.WaitRoutable(10 * time.Second)
	exit := exitIndex(t, n, topo)
	_, c := dialEntry(t, topo)
	route, err := testnet.Route(topo, directory.RoleExit, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("via the entry gateway")
	pkt, _ := sphinx.NewPacket(route, sphinx.Destination{}, msg, sphinx.SizeRegular)
	send := &gatewire.Send{Parity: uint8(topo.Rotation % 2), FirstHop: route[0].Address, Packet: pkt}
	if !c.Send(link.Frame{Kind: link.KindClient, Payload: send.AppendBinary(nil)}) {
		t.Fatal("queue full")
	}
	poll.Until(t, 5*time.Second, "delivery at the exit", func() bool { return box.count(exit, msg) == 1 })
}
