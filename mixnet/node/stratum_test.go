package node_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nym-go/nym/internal/poll"
	"github.com/nym-go/nym/internal/testnet"
	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/sphinx"
)

func stratumHop(t *testing.T, topo *directory.Topology, nd directory.Node) sphinx.Hop {
	t.Helper()
	key, ok := nd.SphinxKeyFor(topo.Rotation)
	if !ok {
		t.Fatalf("node %s has no key for rotation %d", nd.Identity, topo.Rotation)
	}
	return sphinx.Hop{Address: [32]byte(nd.Identity), Key: [32]byte(key), Delay: time.Millisecond}
}

// A mix forwards only to the next layer of the stratified topology: a packet
// whose header sends it from layer 1 to layer 3, or sideways to another
// layer-1 node, or from layer 2 straight to a gateway, is dropped and
// counted where the wrong step would be taken. Before, any listed node was a
// valid next hop, so such routes were delivered.
func TestMixForwardsOnlyToNextLayer(t *testing.T) {
	var box inbox
	n := testnet.Start(t, testnet.Options{Mixnodes: 6, LayerSize: 2, Deliver: box.deliver})
	topo := n.WaitRoutable(20 * time.Second)
	for l, layer := range topo.Layers {
		if len(layer) != 2 {
			t.Fatalf("layer %d has %d nodes, want 2", l+1, len(layer))
		}
	}
	exit := exitIndex(t, n, topo)
	in := newInjector(t, n, topo) // into topo.Layers[0][0]
	L := func(layer, i int) sphinx.Hop { return stratumHop(t, topo, topo.Layers[layer-1][i]) }
	gw := stratumHop(t, topo, topo.Exit[0])
	l1 := nodeByID(n, topo.Layers[0][0].Identity)
	l2 := nodeByID(n, topo.Layers[1][0].Identity)

	wrongLayer := func(nd *testnet.Node) string {
		for _, line := range strings.Split(metric(t, nd, "nym_node_dropped_total"), "\n") {
			if strings.Contains(line, `reason="wrong_layer"`) {
				return line[strings.LastIndex(line, " ")+1:]
			}
		}
		return "0"
	}
	bad := []struct {
		name  string
		route []sphinx.Hop
		at    *testnet.Node // where the wrong step is refused
		count string        // its wrong_layer counter afterwards
	}{
		{"layer 1 to layer 3", []sphinx.Hop{L(1, 0), L(3, 0), gw}, l1, "1"},
		{"layer 1 to layer 1", []sphinx.Hop{L(1, 0), L(1, 1), L(2, 0), L(3, 0), gw}, l1, "2"},
		{"layer 2 to a gateway", []sphinx.Hop{L(1, 0), L(2, 0), gw}, l2, "1"},
	}
	for _, tc := range bad {
		msg := []byte("skips a layer: " + tc.name)
		pkt, err := sphinx.NewPacket(tc.route, sphinx.Destination{}, msg, sphinx.SizeRegular)
		if err != nil {
			t.Fatal(err)
		}
		in.send(t, topo, pkt)
		poll.Until(t, 10*time.Second, fmt.Sprintf("%s: drop counted", tc.name), func() bool {
			return wrongLayer(tc.at) == tc.count
		})
		if c := box.count(exit, msg); c != 0 {
			t.Fatalf("%s: delivered %d times", tc.name, c)
		}
	}

	// The honest route, through the other node of every layer too, still
	// arrives.
	for _, route := range [][]sphinx.Hop{{L(1, 0), L(2, 0), L(3, 0), gw}, {L(1, 0), L(2, 1), L(3, 1), gw}} {
		msg := []byte(fmt.Sprintf("layer by layer via %x", route[1].Address[:4]))
		pkt, err := sphinx.NewPacket(route, sphinx.Destination{}, msg, sphinx.SizeRegular)
		if err != nil {
			t.Fatal(err)
		}
		in.send(t, topo, pkt)
		poll.Until(t, 10*time.Second, "honest delivery", func() bool { return box.count(exit, msg) == 1 })
	}
}
