package exit

import (
	"github.com/nym-go/nym/anonymity"
	"github.com/nym-go/nym/tun"
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
	if rec, ok := anonymity.HostRecord(d.self, pkt, dir); ok {
		d.rec.Record(rec)
	}
}
