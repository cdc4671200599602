// Package wgtrace records the datagrams of a WireGuard bind (fast mode's
// client, entry and exit sockets) into an anonymity trace: what an
// observer of the link sees, each datagram's time, size and other end.
// Both ends of a link name a datagram by anonymity.PacketIDOf its payload
// (the WireGuard message), so their records of it join.
//
// Traces are for measurement only, never in production: see package
// anonymity.
package wgtrace

import (
	"net/netip"
	"sync/atomic"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/nym-go/nym/anonymity"
)

// Config says where a bind records and how it names the ends.
type Config struct {
	// Rec receives the records; nil records nothing (Bind returns the
	// bind unwrapped).
	Rec *anonymity.Recorder
	// Self names the bind's own end, given the port it listens on (a
	// client is named by its endpoint as its entry sees it, whose port is
	// known only once the socket is open), and Role is its role.
	Self func(port uint16) anonymity.NodeID
	Role anonymity.Role
	// Peer names the other end of a datagram, from its endpoint.
	Peer func(ep netip.AddrPort) (anonymity.NodeID, anonymity.Role)
}

// Bind returns b recording every datagram it receives (In, stamped once
// the read returned) and sends (Out, stamped before the send): a sender's
// record is never later than its receiver's. With cfg.Rec nil it is b.
func Bind(b conn.Bind, cfg Config) conn.Bind {
	if cfg.Rec == nil {
		return b
	}
	return &bind{Bind: b, cfg: cfg}
}

type bind struct {
	conn.Bind
	cfg  Config
	self atomic.Uint32 // anonymity.NodeID, set by Open
}

func (b *bind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	fns, actual, err := b.Bind.Open(port)
	if err != nil {
		return fns, actual, err
	}
	b.self.Store(uint32(b.cfg.Self(actual)))
	wrapped := make([]conn.ReceiveFunc, len(fns))
	for i, fn := range fns {
		wrapped[i] = func(pkts [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
			n, err := fn(pkts, sizes, eps)
			for j := range n {
				b.record(pkts[j][:sizes[j]], eps[j], anonymity.In)
			}
			return n, err
		}
	}
	return wrapped, actual, nil
}

func (b *bind) Send(bufs [][]byte, ep conn.Endpoint) error {
	for _, p := range bufs {
		b.record(p, ep, anonymity.Out)
	}
	return b.Bind.Send(bufs, ep)
}

func (b *bind) record(payload []byte, ep conn.Endpoint, dir anonymity.Dir) {
	peer, role := b.cfg.Peer(addrPort(ep))
	self := anonymity.NodeID(b.self.Load())
	var sender anonymity.NodeID // the client end, if either end is one
	switch {
	case role == anonymity.RoleClient:
		sender = peer
	case b.cfg.Role == anonymity.RoleClient:
		sender = self
	}
	b.cfg.Rec.Record(anonymity.Record{
		Event: anonymity.Event{Node: self, Peer: peer, Size: uint32(len(payload)), Role: b.cfg.Role, PeerRole: role, Dir: dir},
		Truth: anonymity.Truth{Packet: anonymity.PacketIDOf(payload), Sender: sender},
	})
}

// addrPort is a bind endpoint's address and port, the address unmapped.
func addrPort(ep conn.Endpoint) netip.AddrPort {
	var ap netip.AddrPort
	if e, ok := ep.(*conn.StdNetEndpoint); ok {
		ap = e.AddrPort
	} else {
		ap, _ = netip.ParseAddrPort(ep.DstToString())
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
