package exit

import (
	"net/netip"

	"github.com/nym-go/nym/anonymity"
	"github.com/nym-go/nym/tun"
	"github.com/nym-go/nym/tun/ippkt"
)

// tracedDevice records the exit's internet side into an anonymity trace:
// every packet the router writes to the TUN goes towards the internet
// (Out), every packet read from it came from there (In). A flow is named
// as an observer of the exit's uplink would see it, by its remote
// endpoint (anonymity.EndpointID of the address and port), not by the
// client inside the tunnel, whom the exit does not know: Truth.Sender
// stays 0, for the experimenter to fill in.
type tracedDevice struct {
	tun.Device
	rec  *anonymity.Recorder
	self anonymity.NodeID
}

func (d *tracedDevice) Write(pkts [][]byte) error {
	for _, p := range pkts {
		d.record(p, anonymity.Out)
	}
	return d.Device.Write(pkts)
}

func (d *tracedDevice) Read(bufs [][]byte, sizes []int) (int, error) {
	n, err := d.Device.Read(bufs, sizes)
	for i := range n {
		d.record(bufs[i][:sizes[i]], anonymity.In)
	}
	return n, err
}

// record records one IP packet; a packet that does not parse is skipped
// (the router drops it too).
func (d *tracedDevice) record(pkt []byte, dir anonymity.Dir) {
	p, err := ippkt.Parse(pkt)
	if err != nil {
		return
	}
	remote := netip.AddrPortFrom(p.Dst, p.DstPort)
	if dir == anonymity.In {
		remote = netip.AddrPortFrom(p.Src, p.SrcPort)
	}
	if !p.HasPorts {
		remote = netip.AddrPortFrom(remote.Addr(), 0)
	}
	d.rec.Record(anonymity.Record{Event: anonymity.Event{
		Node: d.self, Peer: anonymity.EndpointID(remote), Size: uint32(len(pkt)),
		Role: anonymity.RoleExit, PeerRole: anonymity.RoleHost, Dir: dir,
	}})
}
