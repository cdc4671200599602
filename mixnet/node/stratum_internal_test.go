package node

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/nym-go/nym/mixnet/directory"
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
	// Epoch 1: me in layer 1, a in layer 2, b in layer 3.
	old := &directory.Topology{Epoch: 1, Layers: [3][]directory.Node{{mix(me)}, {mix(a)}, {mix(b)}}, Entry: []directory.Node{gateway}}
	// Epoch 2: me in layer 1, b in layer 2, a in layer 3.
	cur := &directory.Topology{Epoch: 2, Layers: [3][]directory.Node{{mix(me)}, {mix(b)}, {mix(a)}}, Entry: []directory.Node{gateway}}

	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	n := &Node{self: me, opts: Options{Now: func() time.Time { return now }}, metrics: newMetrics(prometheus.NewRegistry())}
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
}
