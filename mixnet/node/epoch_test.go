package node_test

import (
	"strings"
	"testing"
	"time"

	"github.com/nym-go/nym/internal/poll"
	"github.com/nym-go/nym/internal/testnet"
	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/node"
	"github.com/nym-go/nym/mixnet/sphinx"
)

const shortEpoch = 1500 * time.Millisecond

// nextEpoch waits for a topology of a later epoch than after.
func nextEpoch(t *testing.T, n *testnet.Net, after uint64) *directory.Topology {
	t.Helper()
	var topo *directory.Topology
	poll.Until(t, 3*shortEpoch+5*time.Second, "next epoch", func() bool {
		tp, err := n.Topology()
		if err == nil && tp.Epoch > after {
			topo = tp
			return true
		}
		return false
	})
	return topo
}

func TestStoppedNodeReplacedByStandby(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for epochs")
	}
	n := testnet.Start(t, testnet.Options{Mixnodes: 4, EpochLength: shortEpoch})
	topo := n.WaitRoutable(10 * time.Second)
	if len(topo.Standby) != 1 {
		t.Fatalf("%d standby nodes, want 1", len(topo.Standby))
	}
	standby := topo.Standby[0].Identity
	victim := topo.Layers[1][0].Identity
	n.StopNode(nodeByID(n, victim).Index)

	deadline := time.Now().Add(4 * shortEpoch)
	for {
		topo = nextEpoch(t, n, topo.Epoch)
		role, layer := topo.RoleOf(victim)
		if role == directory.RoleNone && len(topo.Layers[1]) == 1 && topo.Layers[1][0].Identity == standby {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("epoch %d: stopped node has role %v/%d, layer 2 = %v", topo.Epoch, role, layer, topo.Layers[1])
		}
	}
	// The other layers did not move.
	if r, _ := topo.RoleOf(standby); r != directory.RoleMix {
		t.Fatalf("standby has role %v", r)
	}
	n.WaitRoutable(10 * time.Second)
}

func TestAutoNodeBecomesGatewayWithoutRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for epochs")
	}
	var box inbox
	n := testnet.Start(t, testnet.Options{Mixnodes: 3, LayerSize: 2, EpochLength: shortEpoch, Deliver: box.deliver})
	topo := n.WaitRoutable(10 * time.Second)
	// Gateways are full, so the auto node added now can only take a seat in a
	// mix layer, beside a mixnode (layers hold 2).
	auto := n.AddNode(node.ModeAuto)
	poll.Until(t, 4*shortEpoch+5*time.Second, "auto node to mix", func() bool {
		role, _ := auto.Role()
		return role == directory.RoleMix
	})
	topo = n.WaitRoutable(10 * time.Second)
	running := auto.Node
	n.StopNode(exitIndex(t, n, topo))

	poll.Until(t, 6*shortEpoch+5*time.Second, "auto node to take the exit role", func() bool {
		role, _ := auto.Role()
		if role != directory.RoleExit {
			tp, _ := n.Topology()
			t.Logf("auto node role %v; topology %v", role, tp)
		}
		return role == directory.RoleExit
	})
	if auto.Node != running {
		t.Fatal("the auto node was restarted")
	}
	topo = n.WaitRoutable(10 * time.Second)
	// It works as the last hop now.
	in := newInjector(t, n, topo)
	route, err := testnet.Route(topo, directory.RoleExit, 0)
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("to the new exit")
	pkt, _ := sphinx.NewPacket(route, sphinx.Destination{}, msg, sphinx.SizeRegular)
	in.send(t, topo, pkt)
	poll.Until(t, 5*time.Second, "delivery at the auto node", func() bool { return box.count(auto.Index, msg) == 1 })
}

func TestKeyRotationOverlap(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for epochs")
	}
	var box inbox
	// One epoch per rotation: every epoch is the first of its rotation, so a
	// key is good for its own epoch and the one after.
	const epoch = 2 * shortEpoch // room to act inside the overlap epoch
	n := testnet.Start(t, testnet.Options{EpochLength: epoch, RotationEpochs: 1, Deliver: box.deliver})
	topo := n.WaitRoutable(10 * time.Second)
	exit := exitIndex(t, n, topo)
	route, err := testnet.Route(topo, directory.RoleExit, 0)
	if err != nil {
		t.Fatal(err)
	}
	build := func(msg string) []byte {
		pkt, err := sphinx.NewPacket(route, sphinx.Destination{}, []byte(msg), sphinx.SizeRegular)
		if err != nil {
			t.Fatal(err)
		}
		return pkt
	}
	inOverlap, afterOverlap := build("in overlap"), build("after overlap")
	old := topo

	// Next rotation: the old key is still held for one epoch.
	topo = nextEpoch(t, n, old.Epoch)
	if topo.Epoch != old.Epoch+1 {
		t.Skipf("missed the overlap epoch (went from %d to %d): machine too slow", old.Epoch, topo.Epoch)
	}
	topo, err = n.Routable(epoch / 2)
	if err != nil {
		t.Skipf("nodes did not reach the overlap epoch in time (%v): machine too slow", err)
	}
	in := newInjector(t, n, topo)
	in.send(t, old, inOverlap)
	poll.Until(t, 5*time.Second, "old-key packet during the overlap", func() bool { return box.count(exit, []byte("in overlap")) == 1 })

	// Two rotations on, the old key is gone.
	topo = nextEpoch(t, n, topo.Epoch)
	topo = n.WaitRoutable(10 * time.Second)
	in = newInjector(t, n, topo)
	in.send(t, old, afterOverlap)
	l1 := nodeByID(n, topo.Layers[0][0].Identity)
	poll.Until(t, 5*time.Second, "old-key packet refused", func() bool {
		m := metric(t, l1, "nym_mixnode_packets_dropped_total")
		return strings.Contains(m, `reason="unknown_key"`) || strings.Contains(m, `reason="bad_packet"`)
	})
	if box.count(exit, []byte("after overlap")) != 0 {
		t.Fatal("a packet for an expired key was delivered")
	}
}
