package node

import (
	"sync/atomic"

	"github.com/nym-go/nym/anonymity"
	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/link"
	"github.com/nym-go/nym/mixnet/sphinx"
)

// tracer records the node's packets into its anonymity trace (trace_file):
// what an observer of every link sees, named as anonymity.IDOf names them.
// A nil *tracer is tracing off; the node calls it only behind a nil check,
// so an untraced node pays one comparison per packet.
type tracer struct {
	rec  *anonymity.Recorder
	self anonymity.NodeID
	n    *Node
	// peers names the nodes of the current and previous topologies, rebuilt
	// when either changes: a packet's hop is a map lookup, not a scan.
	peers atomic.Pointer[tracePeers]
}

// tracePeers maps the nodes of the topologies cur and prev to their trace
// ids and roles, by link (Noise) key and by identity.
type tracePeers struct {
	cur, prev  *directory.Topology
	byNoise    map[[32]byte]tracePeer
	byIdentity map[directory.Key]anonymity.Role
}

type tracePeer struct {
	id   anonymity.NodeID
	role anonymity.Role
}

// traceRole is a node's role as a trace names it: a mix, or a gateway (the
// entry and exit roles alike; anonymity.RoleExit is the exit's internet
// side). A listed node in neither role (standby) is named by what it offers.
func traceRole(r directory.Role, n directory.Node) anonymity.Role {
	switch {
	case r == directory.RoleEntry || r == directory.RoleExit:
		return anonymity.RoleGateway
	case r == directory.RoleMix || !n.Capabilities.Gateway():
		return anonymity.RoleMix
	default:
		return anonymity.RoleGateway
	}
}

// index returns the names of the topologies' nodes, rebuilding them when
// the node has moved to another topology.
func (tr *tracer) index() *tracePeers {
	cur := tr.n.topo.Load()
	var prev *directory.Topology
	if p := tr.n.prev.Load(); p != nil {
		prev = p.t
	}
	if ps := tr.peers.Load(); ps != nil && ps.cur == cur && ps.prev == prev {
		return ps
	}
	ps := &tracePeers{cur: cur, prev: prev, byNoise: make(map[[32]byte]tracePeer), byIdentity: make(map[directory.Key]anonymity.Role)}
	for _, t := range []*directory.Topology{prev, cur} { // the current epoch's roles win
		if t == nil {
			continue
		}
		for _, group := range [][]directory.Node{t.Entry, t.Exit, t.Layers[0], t.Layers[1], t.Layers[2], t.Standby} {
			for _, nd := range group {
				role, _ := t.RoleOf(nd.Identity)
				p := tracePeer{id: anonymity.IDOf(nd.Identity[:]), role: traceRole(role, nd)}
				ps.byNoise[nd.NoiseKey] = p
				ps.byIdentity[nd.Identity] = p.role
			}
		}
	}
	tr.peers.Store(ps)
	return ps
}

// role is the node's own role this epoch.
func (tr *tracer) role() anonymity.Role {
	if tr.n.state.Load().Role == directory.RoleMix || tr.n.gateway == nil {
		return anonymity.RoleMix
	}
	return anonymity.RoleGateway
}

// in records a packet of size bytes (a link frame's payload) arriving from
// the node whose link key is from, and returns the packet's id for its
// departure.
func (tr *tracer) in(from [32]byte, size int) uint64 {
	p, ok := tr.index().byNoise[from]
	if !ok {
		// Let in by the boundary grace from a topology we no longer
		// hold: named by its link key, a relay all the same.
		p = tracePeer{id: anonymity.IDOf(from[:]), role: anonymity.RoleMix}
	}
	id := tr.rec.Packet()
	tr.rec.Record(anonymity.Record{
		Event: anonymity.Event{Node: tr.self, Peer: p.id, Size: uint32(link.WireLen(size)), Role: tr.role(), PeerRole: p.role, Dir: anonymity.In},
		Truth: anonymity.Truth{Packet: id},
	})
	return id
}

// out records a packet leaving for the node whose identity is next; packet
// is its id from in, 0 for a packet that did not come off a node's link.
func (tr *tracer) out(packet uint64, next [sphinx.AddressSize]byte, size int) {
	role, ok := tr.index().byIdentity[directory.Key(next)]
	if !ok {
		role = anonymity.RoleMix
	}
	tr.rec.Record(anonymity.Record{
		Event: anonymity.Event{Node: tr.self, Peer: anonymity.IDOf(next[:]), Size: uint32(link.WireLen(size)), Role: tr.role(), PeerRole: role, Dir: anonymity.Out},
		Truth: anonymity.Truth{Packet: packet},
	})
}

// Trace is the node's anonymity trace recorder, nil unless trace_file is
// set: the exit's IP router beside the node records its internet side into
// it. Run closes it when it returns.
func (n *Node) Trace() *anonymity.Recorder {
	if n.trace == nil {
		return nil
	}
	return n.trace.rec
}

// closeTrace flushes and closes the trace file, if any.
func (n *Node) closeTrace() {
	if n.trace == nil {
		return
	}
	if err := n.trace.rec.Close(); err != nil {
		n.log.Error("closing the anonymity trace", "err", err)
	}
}
