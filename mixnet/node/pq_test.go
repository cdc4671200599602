package node_test

import (
	"context"
	"crypto/rand"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/nym-go/nym/internal/poll"
	"github.com/nym-go/nym/internal/testnet"
	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/gatewire"
	"github.com/nym-go/nym/mixnet/link"
	"github.com/nym-go/nym/mixnet/sphinx"
)

// linkEvent reads one of a node's link counters from its metrics.
func linkEvent(t *testing.T, nd *testnet.Node, event string) int {
	t.Helper()
	m := regexp.MustCompile(`event="` + event + `"} (\d+)`).FindStringSubmatch(metric(t, nd, "nym_link_events_total"))
	if m == nil {
		return 0
	}
	v, _ := strconv.Atoi(m[1])
	return v
}

// TestHybridLinksEverywhere: every node publishes an ML-KEM key, a client
// reaches its gateway with the hybrid handshake, and the links the packet
// then takes between nodes (entry, three layers, exit) are all hybrid.
func TestHybridLinksEverywhere(t *testing.T) {
	var box inbox
	n := testnet.Start(t, testnet.Options{Deliver: box.deliver})
	topo := n.WaitRoutable(10 * time.Second)
	for _, group := range [][]directory.Node{topo.Entry, topo.Exit, topo.Layers[0], topo.Layers[1], topo.Layers[2]} {
		for _, nd := range group {
			if len(nd.KEMKey) != directory.KEMKeySize {
				t.Fatalf("node %s publishes no KEM key", nd.Identity)
			}
		}
	}
	exit := exitIndex(t, n, topo)
	entry := topo.Entry[0]
	gwKEM, err := link.ParseKEMPublicKey(entry.KEMKey)
	if err != nil {
		t.Fatal(err)
	}
	me, _ := link.GenerateKeyPair(rand.Reader)
	stats := new(link.Stats)
	c, err := link.Dial(context.Background(), entry.ClientsAddr, [32]byte(entry.NoiseKey), link.Config{
		Static: me, Stats: stats,
		PeerKEM: func([32]byte) *link.KEMPublicKey { return gwKEM },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if stats.HandshakesHybrid.Load() != 1 {
		t.Fatal("client's link to its gateway is not hybrid")
	}
	route, err := testnet.Route(topo, directory.RoleExit, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("over post-quantum links")
	pkt, _ := sphinx.NewPacket(route, sphinx.Destination{}, msg, sphinx.SizeRegular)
	send := &gatewire.Send{Parity: uint8(topo.Rotation % 2), FirstHop: route[0].Address, Packet: pkt}
	if !c.Send(link.Frame{Kind: link.KindClient, Payload: send.Append(nil)}) {
		t.Fatal("queue full")
	}
	poll.Until(t, 10*time.Second, "delivery at the exit", func() bool { return box.count(exit, msg) == 1 })
	for _, id := range []directory.Key{entry.Identity, topo.Layers[0][0].Identity, topo.Layers[1][0].Identity, topo.Layers[2][0].Identity, topo.Exit[0].Identity} {
		nd := nodeByID(n, id)
		if h, cl := linkEvent(t, nd, "handshakes_hybrid"), linkEvent(t, nd, "handshakes_classical"); h == 0 || cl != 0 {
			t.Errorf("node %d: %d hybrid and %d classical handshakes; want only hybrid", nd.Index, h, cl)
		}
	}
}
