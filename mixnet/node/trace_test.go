package node_test

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/nym-go/nym/anonymity"
	"github.com/nym-go/nym/internal/poll"
	"github.com/nym-go/nym/internal/testnet"
	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/gatewire"
	"github.com/nym-go/nym/mixnet/link"
	"github.com/nym-go/nym/mixnet/node"
	"github.com/nym-go/nym/mixnet/sphinx"
)

// readNodeTraces stops the network's nodes (closing their trace files) and
// reads every node's trace, by node index.
func readNodeTraces(t *testing.T, n *testnet.Net) map[int][]anonymity.Record {
	t.Helper()
	out := make(map[int][]anonymity.Record)
	for _, nd := range n.Nodes() {
		n.StopNode(nd.Index)
		f, err := os.Open(nd.Config.TracePath())
		if err != nil {
			t.Fatal(err)
		}
		recs, err := anonymity.ReadTrace(f)
		f.Close()
		if err != nil {
			t.Fatalf("node %d: %v", nd.Index, err)
		}
		out[nd.Index] = recs
	}
	return out
}

// TestTraceThroughThreeLayers sends packets through the three mix layers of
// a network whose nodes all record traces, and checks that the traces
// agree with each other (anonymity.Check) and with the route: every mix
// records each packet in from the previous hop and out to the next, under
// one packet id, out after in; the entry gateway records the client's
// frames under the ids the client computes.
func TestTraceThroughThreeLayers(t *testing.T) {
	var box inbox
	n := testnet.Start(t, testnet.Options{
		Deliver:  box.deliver,
		EditNode: func(c *node.Config) { c.TraceFile = "trace" },
	})
	topo := n.WaitRoutable(10 * time.Second)
	exit := exitIndex(t, n, topo)
	entry := topo.Entry[0]
	me, c := dialEntry(t, topo)
	route, err := testnet.Route(topo, directory.RoleExit, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	const packets = 30
	sent := make(map[uint64]int) // the client link's packet ids: frame lengths
	for i := range packets {
		msg := fmt.Appendf(nil, "traced packet %d", i)
		pkt, err := sphinx.NewPacket(route, sphinx.Destination{}, msg, sphinx.SizeRegular)
		if err != nil {
			t.Fatal(err)
		}
		send := (&gatewire.Send{Parity: uint8(topo.Rotation % 2), FirstHop: route[0].Address, Packet: pkt}).AppendBinary(nil)
		sent[anonymity.PacketIDOf(send)] = len(send)
		if !c.Send(link.Frame{Kind: link.KindClient, Payload: send}) {
			t.Fatal("queue full")
		}
		poll.Until(t, 10*time.Second, "delivery", func() bool { return box.count(exit, msg) == 1 })
	}
	index := make(map[directory.Key]int)
	for _, nd := range n.Nodes() {
		index[directory.Key(nd.Identity())] = nd.Index
	}
	traces := readNodeTraces(t, n)

	id := func(k directory.Key) anonymity.NodeID { return anonymity.IDOf(k[:]) }
	hops := []struct {
		node       directory.Key
		role       anonymity.Role
		prev, next directory.Key
	}{
		{topo.Layers[0][0].Identity, anonymity.RoleMix, topo.Entry[0].Identity, topo.Layers[1][0].Identity},
		{topo.Layers[1][0].Identity, anonymity.RoleMix, topo.Layers[0][0].Identity, topo.Layers[2][0].Identity},
		{topo.Layers[2][0].Identity, anonymity.RoleMix, topo.Layers[1][0].Identity, topo.Exit[0].Identity},
	}
	var all []anonymity.Record
	for _, recs := range traces {
		all = append(all, recs...)
	}
	for _, h := range hops {
		nd := index[h.node]
		recs := traces[nd]
		ins := make(map[uint64]anonymity.Record)
		outs := 0
		for _, r := range recs {
			if r.Node != id(h.node) || r.Role != h.role {
				t.Fatalf("node %d recorded as %#x/%d, want %#x/%d", nd, r.Node, r.Role, id(h.node), h.role)
			}
			if r.Size != uint32(link.WireLen(sphinx.RegularPacketSize)) {
				t.Errorf("node %d: size %d", nd, r.Size)
			}
			switch r.Dir {
			case anonymity.In:
				if r.Peer != id(h.prev) || r.PeerRole == anonymity.RoleClient {
					t.Errorf("node %d: in from %#x (role %d), want %#x", nd, r.Peer, r.PeerRole, id(h.prev))
				}
				ins[r.Truth.Packet] = r
			case anonymity.Out:
				if r.Peer != id(h.next) {
					t.Errorf("node %d: out to %#x, want %#x", nd, r.Peer, id(h.next))
				}
				in, ok := ins[r.Truth.Packet]
				if !ok || r.Truth.Packet == 0 {
					t.Errorf("node %d: out of packet %d, never in", nd, r.Truth.Packet)
				} else if r.Time < in.Time {
					t.Errorf("node %d: packet %d out before in", nd, r.Truth.Packet)
				}
				delete(ins, r.Truth.Packet)
				outs++
			}
		}
		if outs < packets || len(ins) != 0 {
			t.Errorf("node %d: %d packets out (want >= %d), %d in and never out", nd, outs, packets, len(ins))
		}
	}
	// The entry gateway saw each packet in on the client's link, knowing
	// the sender, and told the client (downstream) where its account
	// stands.
	me16 := anonymity.IDOf(me.Public[:])
	var upstream, downstream int
	for _, r := range traces[index[entry.Identity]] {
		if r.Peer != me16 {
			continue
		}
		if r.Role != anonymity.RoleGateway || r.PeerRole != anonymity.RoleClient || r.Node != id(entry.Identity) {
			t.Errorf("client link record %+v", r)
		}
		switch r.Dir {
		case anonymity.In:
			if n, ok := sent[r.Truth.Packet]; !ok || r.Truth.Sender != me16 || r.Size != uint32(link.WireLen(n)) {
				t.Errorf("upstream record %+v: not one of the frames sent", r)
			}
			delete(sent, r.Truth.Packet)
			upstream++
		case anonymity.Out:
			downstream++
		}
	}
	if upstream != packets || len(sent) != 0 || downstream == 0 {
		t.Errorf("client link: %d frames up (want %d, %d missed), %d down (want > 0)", upstream, packets, len(sent), downstream)
	}
	// The exit gateway saw every packet in from layer 3.
	exitIn := 0
	for _, r := range traces[exit] {
		if r.Dir == anonymity.In && r.Peer == id(topo.Layers[2][0].Identity) && r.Role == anonymity.RoleGateway && r.PeerRole == anonymity.RoleMix {
			exitIn++
		}
	}
	if exitIn < packets {
		t.Errorf("exit gateway: %d packets in from layer 3, want >= %d", exitIn, packets)
	}
	// Links between the nodes: entry → 1 → 2 → 3 → exit.
	rep, err := anonymity.Check(all)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Links < 4 || rep.Packets < 7*packets {
		t.Errorf("checked %+v: want the 4 links of the route, and %d packets across links and through mixes", rep, 7*packets)
	}
}
