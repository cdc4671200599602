package anonymity

import (
	"net/netip"

	"github.com/nym-go/nym/tun/ippkt"
)

// HostRecord is the record of one IP packet on an exit's internet side, as
// an observer of the exit's uplink sees it: at self (RoleExit), Out towards
// the internet or In from it, the flow named by its remote endpoint
// (EndpointID of the address and port; port 0 for a packet without one),
// Size the packet's length. Truth.Sender stays 0: the exit does not know
// the client, the experimenter does. false for a packet that does not
// parse (the exit drops it too). The IP packet router's exit and fast
// mode's exit gateway record their TUNs with it, so both name flows alike.
func HostRecord(self NodeID, pkt []byte, dir Dir) (Record, bool) {
	p, err := ippkt.Parse(pkt)
	if err != nil {
		return Record{}, false
	}
	remote := netip.AddrPortFrom(p.Dst, p.DstPort)
	if dir == In {
		remote = netip.AddrPortFrom(p.Src, p.SrcPort)
	}
	if !p.HasPorts {
		remote = netip.AddrPortFrom(remote.Addr(), 0)
	}
	return Record{Event: Event{
		Node: self, Peer: EndpointID(remote), Size: uint32(len(pkt)),
		Role: RoleExit, PeerRole: RoleHost, Dir: dir,
	}}, true
}
