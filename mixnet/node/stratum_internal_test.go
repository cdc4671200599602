package node

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/link"
)

// At an epoch boundary the layers are dealt anew; a packet built from the
// previous epoch's topology must still be forwarded along that epoch's
// layers during the grace period, and only then.
func TestNextHopEpochBoundaryGrace(t *testing.T) {
	me, a, b, gw := directory.Key{1}, directory.Key{2}, directory.Key{3}, directory.Key{4}
	mix := func(k directory.Key) directory.Node {
		return directory.Node{Identity: k, Capabilities: directory.Capabilities{Mixnode: true}}
	}
	gateway := directory.Node{Identity: gw, Capabilities: directory.Capabilities{Entry: true}}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	epoch := func(n uint64, layers [3][]directory.Node) *directory.Topology {
		start := now.Add(time.Duration(n-2) * time.Hour)
		return &directory.Topology{Epoch: n, EpochStart: start, EpochEnd: start.Add(time.Hour), EpochLength: time.Hour,
			Layers: layers, Entry: []directory.Node{gateway}}
	}
	// Epoch 1: me in layer 1, a in layer 2, b in layer 3.
	old := epoch(1, [3][]directory.Node{{mix(me)}, {mix(a)}, {mix(b)}})
	// Epoch 2, which has just begun: me in layer 1, b in layer 2, a in layer 3.
	cur := epoch(2, [3][]directory.Node{{mix(me)}, {mix(b)}, {mix(a)}})

	m, err := newMetrics(prometheus.NewRegistry(), &link.Stats{})
	if err != nil {
		t.Fatal(err)
	}
	n := &Node{self: me, opts: Options{Now: func() time.Time { return now }}, metrics: m}
	n.topo.Store(old)
	n.adopt(cur)

	dropped := func(reason string) float64 {
		var m dto.Metric
		if err := n.metrics.dropped.WithLabelValues(reason).Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetCounter().GetValue()
	}
	if _, ok := n.nextHop(b); !ok {
		t.Fatal("refused layer 2 of the current epoch")
	}
	if _, ok := n.nextHop(a); !ok {
		t.Fatal("refused, during the grace, layer 2 of the previous epoch")
	}
	if _, ok := n.nextHop(gw); ok {
		t.Fatal("layer 1 forwarded to a gateway")
	}
	if _, ok := n.nextHop(directory.Key{9}); ok {
		t.Fatal("forwarded to a node no topology lists")
	}
	if got := dropped("wrong_layer"); got != 1 {
		t.Fatalf("wrong_layer drops = %v, want 1", got)
	}
	if got := dropped("unknown_next_hop"); got != 1 {
		t.Fatalf("unknown_next_hop drops = %v, want 1", got)
	}
	now = now.Add(n.layerGrace() + time.Second)
	if _, ok := n.nextHop(a); ok {
		t.Fatal("after the grace, forwarded along the previous epoch's layers")
	}
	if _, ok := n.nextHop(b); !ok {
		t.Fatal("refused layer 2 of the current epoch after the grace")
	}

	// Just before the epoch ends, and after it until the node has the next
	// topology, senders may route by that one: listed hops go through,
	// unknown ones still do not.
	now = cur.EpochEnd.Add(-boundarySlack(cur) - time.Millisecond)
	if _, ok := n.nextHop(gw); ok {
		t.Fatal("layer 1 forwarded to a gateway before the boundary slack")
	}
	now = cur.EpochEnd.Add(-boundarySlack(cur))
	if _, ok := n.nextHop(gw); !ok {
		t.Fatal("a listed hop refused at the boundary, where the next epoch's layers may apply")
	}
	now = cur.EpochEnd.Add(time.Second)
	if _, ok := n.nextHop(gw); !ok {
		t.Fatal("a listed hop refused past the epoch's end, before the next topology came")
	}
	if _, ok := n.nextHop(directory.Key{9}); ok {
		t.Fatal("forwarded to a node no topology lists, at the boundary")
	}
}
