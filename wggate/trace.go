package wggate

import (
	"net/netip"
	"sync/atomic"

	"golang.zx2c4.com/wireguard/conn"
	wgtun "golang.zx2c4.com/wireguard/tun"

	"github.com/nym-go/nym/anonymity"
	"github.com/nym-go/nym/anonymity/wgtrace"
	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/wgreg"
)

// tracer records the door's traffic into the node's anonymity trace
// (Config.Trace, the node's trace_file), named as package anonymity names
// everything: the gateway by anonymity.IDOf its identity key, a client by
// anonymity.EndpointID of its endpoint (its address is all an observer of
// the link knows of it), another gateway by IDOf its identity, found from
// the topology by address. What it records:
//
//   - every datagram on the WireGuard port (wgtrace): at an entry, In from
//     and Out to clients (RoleClient); at an exit, from and to entries
//     (RoleGateway);
//   - an entry's relay: each datagram Out to an exit and In from it, on
//     the relay's sockets;
//   - an exit's internet side: each IP packet the device writes to its TUN
//     (Out) or reads from it (In), by anonymity.HostRecord, as the IP
//     packet router's exit records its own.
//
// A gateway without Config.Trace has no tracer: its bind and TUN are not
// wrapped, and the relay pays a nil check per batch.
type tracer struct {
	rec  *anonymity.Recorder
	self anonymity.NodeID
	g    *Gateway
	idx  atomic.Pointer[traceIndex]
}

// traceIndex names the gateways of the topologies cur and prev by their
// WireGuard addresses, the gateway itself left out (so that gateways that
// share an address, in a test on loopback, name each other).
type traceIndex struct {
	cur, prev  *directory.Topology
	byAddr     map[netip.Addr]anonymity.NodeID
	byEndpoint map[netip.AddrPort]anonymity.NodeID
}

// traced wraps the device's TUN and bind in a tracer when cfg.Trace is
// set, and gives the entry's relay the tracer.
func (g *Gateway) traced(tdev wgtun.Device, b conn.Bind) (wgtun.Device, conn.Bind) {
	if g.cfg.Trace == nil {
		return tdev, b
	}
	tr := &tracer{rec: g.cfg.Trace, self: anonymity.IDOf(g.cfg.Identity[:]), g: g}
	cfg := wgtrace.Config{
		Rec:  tr.rec,
		Self: func(uint16) anonymity.NodeID { return tr.self },
		Role: anonymity.RoleGateway,
		Peer: tr.peer,
	}
	if g.cfg.Role == wgreg.RoleEntry {
		g.relay.trace = tr
		// Every datagram on an entry's port is a client's.
		cfg.Peer = func(ep netip.AddrPort) (anonymity.NodeID, anonymity.Role) {
			return anonymity.EndpointID(ep), anonymity.RoleClient
		}
	} else {
		tdev = &tracedTUN{Device: tdev, tr: tr}
	}
	return tdev, wgtrace.Bind(b, cfg)
}

// index returns the topologies' gateways by address, rebuilt when the
// gateway has moved to another topology.
func (tr *tracer) index() *traceIndex {
	cur, prev := tr.g.topo.Load(), tr.g.prevTopo.Load()
	if ix := tr.idx.Load(); ix != nil && ix.cur == cur && ix.prev == prev {
		return ix
	}
	ix := &traceIndex{cur: cur, prev: prev, byAddr: make(map[netip.Addr]anonymity.NodeID), byEndpoint: make(map[netip.AddrPort]anonymity.NodeID)}
	for _, t := range []*directory.Topology{prev, cur} { // the current epoch's win
		if t == nil {
			continue
		}
		for _, group := range [][]directory.Node{t.Entry, t.Exit} {
			for i := range group {
				ep, ok := group[i].WGAddrPort()
				if !ok {
					continue
				}
				ep = netip.AddrPortFrom(ep.Addr().Unmap(), ep.Port())
				id := anonymity.IDOf(group[i].Identity[:])
				if id == tr.self {
					continue
				}
				ix.byAddr[ep.Addr()] = id
				ix.byEndpoint[ep] = id
			}
		}
	}
	tr.idx.Store(ix)
	return ix
}

// peer names an exit's correspondent: a gateway of the topology by its
// address (an entry's relay sockets have ports of their own), else a
// client that reached the exit directly, which the protocol never does.
func (tr *tracer) peer(ep netip.AddrPort) (anonymity.NodeID, anonymity.Role) {
	if id, ok := tr.index().byAddr[ep.Addr()]; ok {
		return id, anonymity.RoleGateway
	}
	return anonymity.EndpointID(ep), anonymity.RoleClient
}

// relayed records a datagram on an entry's relay socket to or from exit.
func (tr *tracer) relayed(exit netip.AddrPort, payload []byte, dir anonymity.Dir) {
	exit = netip.AddrPortFrom(exit.Addr().Unmap(), exit.Port())
	id, ok := tr.index().byEndpoint[exit]
	if !ok {
		id = anonymity.EndpointID(exit)
	}
	tr.rec.Record(anonymity.Record{
		Event: anonymity.Event{Node: tr.self, Peer: id, Size: uint32(len(payload)), Role: anonymity.RoleGateway, PeerRole: anonymity.RoleGateway, Dir: dir},
		Truth: anonymity.Truth{Packet: anonymity.PacketIDOf(payload)},
	})
}

// tracedTUN records an exit's internet side: what the device writes to
// the TUN leaves for the internet, what it reads came from there.
type tracedTUN struct {
	wgtun.Device
	tr *tracer
}

func (t *tracedTUN) Write(bufs [][]byte, offset int) (int, error) {
	for _, b := range bufs {
		t.record(b[offset:], anonymity.Out)
	}
	return t.Device.Write(bufs, offset)
}

func (t *tracedTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, err := t.Device.Read(bufs, sizes, offset)
	for i := range n {
		t.record(bufs[i][offset:offset+sizes[i]], anonymity.In)
	}
	return n, err
}

func (t *tracedTUN) record(pkt []byte, dir anonymity.Dir) {
	if rec, ok := anonymity.HostRecord(t.tr.self, pkt, dir); ok {
		t.tr.rec.Record(rec)
	}
}
