package ipr

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/nym-go/nym/tun/ippkt"
)

var errBadPacket = errors.New("ipr: malformed IP packet")

// ipHeader is what the router needs from an IP packet.
type ipHeader struct {
	src, dst netip.Addr
	proto    uint8  // transport protocol, after any IPv6 extension headers
	dstPort  uint16 // 0 when the protocol has no ports or this is a later fragment
}

// parseIP reads a packet's headers with tun/ippkt and insists the packet is
// exactly as long as its header says: inside a bundle, anything else means
// the framing is off.
func parseIP(pkt []byte) (ipHeader, error) {
	p, err := ippkt.Parse(pkt)
	if err != nil {
		return ipHeader{}, fmt.Errorf("%w: %v", errBadPacket, err)
	}
	if p.TotalLen != len(pkt) {
		return ipHeader{}, fmt.Errorf("%w: %d bytes, header says %d", errBadPacket, len(pkt), p.TotalLen)
	}
	h := ipHeader{src: p.Src, dst: p.Dst, proto: p.Protocol}
	if p.HasPorts {
		h.dstPort = p.DstPort
	}
	return h, nil
}
