package client

import (
	"math"
	"testing"
	"time"

	"github.com/nym-go/nym/mixnet/directory"
)

func testNode(id byte, perf float64, rotations ...uint64) directory.Node {
	n := directory.Node{Identity: directory.Key{id}, Performance: perf}
	for _, r := range rotations {
		n.SphinxKeys = append(n.SphinxKeys, directory.SphinxKey{Rotation: r, Key: directory.Key{id, byte(r)}})
	}
	return n
}

func testTopology() *directory.Topology {
	t := &directory.Topology{Rotation: 3, Epoch: 3 * 24, RotationEpochs: 24}
	t.Entry = []directory.Node{testNode(100, 1, 3)}
	t.Layers[0] = []directory.Node{testNode(1, 1, 3), testNode(2, 0.25, 3), testNode(3, 1, 2)} // 3 has no key for rotation 3
	t.Layers[1] = []directory.Node{testNode(11, 1, 3, 4)}
	t.Layers[2] = []directory.Node{testNode(21, 1, 3)}
	return t
}

func TestRouteShape(t *testing.T) {
	r := &routes{rnd: newRandomSource(), hopDelay: 15 * time.Millisecond}
	r.topo.Store(testTopology())
	rt, err := r.newRoute(directory.Key{100})
	if err != nil {
		t.Fatal(err)
	}
	if rt.parity != 1 {
		t.Errorf("parity %d for rotation 3", rt.parity)
	}
	if rt.hops[1].Address != [32]byte{11} || rt.hops[2].Address != [32]byte{21} || rt.hops[3].Address != [32]byte{100} {
		t.Errorf("route %v", rt.hops)
	}
	for i, h := range rt.hops {
		if h.Key[0] != h.Address[0] || h.Key[1] != 3 {
			t.Errorf("hop %d uses key %x, not its rotation-3 key", i, h.Key[:2])
		}
	}
	if rt.hops[3].Delay != 0 || rt.delay != rt.hops[0].Delay+rt.hops[1].Delay+rt.hops[2].Delay {
		t.Errorf("delays %v sum %v", rt.hops, rt.delay)
	}
	if _, err := r.newRoute(directory.Key{99}); err == nil {
		t.Error("route to a gateway not in the topology")
	}
}

func TestRouteWeightsAndDelays(t *testing.T) {
	const mean = 15 * time.Millisecond
	r := &routes{rnd: newRandomSource(), hopDelay: mean}
	r.topo.Store(testTopology())
	const n = 20000
	var count [4]int
	var sum time.Duration
	for range n {
		rt, err := r.newRoute(directory.Key{100})
		if err != nil {
			t.Fatal(err)
		}
		count[rt.hops[0].Address[0]]++
		sum += rt.hops[0].Delay
	}
	if count[3] != 0 {
		t.Fatalf("node without a key for the rotation chosen %d times", count[3])
	}
	// Performance 1 vs 0.25: node 1 gets 80%.
	if frac := float64(count[1]) / n; math.Abs(frac-0.8) > 0.02 {
		t.Errorf("node 1 chosen %.3f of the time, want 0.8", frac)
	}
	if m := sum / n; m < mean*95/100 || m > mean*105/100 {
		t.Errorf("mean hop delay %v, want %v", m, mean)
	}

	// Packets through node 1 went unacknowledged: it is now avoided.
	r.health.lost([]directory.Key{{1}})
	r.health.lost([]directory.Key{{1}})
	count = [4]int{}
	for range n {
		rt, _ := r.newRoute(directory.Key{100})
		count[rt.hops[0].Address[0]]++
	}
	if frac := float64(count[1]) / n; frac > 0.5 {
		t.Errorf("after losses node 1 still chosen %.3f of the time", frac)
	}
	r.health.delivered([]directory.Key{{1}})
	if r.health.factor(directory.Key{1}) != 1 {
		t.Error("an ack did not clear the penalty")
	}
}
