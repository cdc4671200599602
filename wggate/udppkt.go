package wggate

import (
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// appendUDP appends an IPv4 or IPv6 packet carrying payload in UDP from src
// to dst (both of the same family), with valid checksums: what the entry
// writes back into a client's outer tunnel.
func appendUDP(b []byte, src, dst netip.AddrPort, payload []byte) []byte {
	ipLen := header.IPv4MinimumSize
	if src.Addr().Is6() {
		ipLen = header.IPv6MinimumSize
	}
	udpLen := header.UDPMinimumSize + len(payload)
	start := len(b)
	b = append(b, make([]byte, ipLen+header.UDPMinimumSize)...)
	b = append(b, payload...)
	pkt := b[start:]
	srcA, dstA := tcpip.AddrFromSlice(src.Addr().AsSlice()), tcpip.AddrFromSlice(dst.Addr().AsSlice())
	if src.Addr().Is6() {
		header.IPv6(pkt).Encode(&header.IPv6Fields{
			PayloadLength:     uint16(udpLen),
			TransportProtocol: header.UDPProtocolNumber,
			HopLimit:          64,
			SrcAddr:           srcA,
			DstAddr:           dstA,
		})
	} else {
		ip := header.IPv4(pkt)
		ip.Encode(&header.IPv4Fields{
			TotalLength: uint16(ipLen + udpLen),
			TTL:         64,
			Protocol:    uint8(header.UDPProtocolNumber),
			SrcAddr:     srcA,
			DstAddr:     dstA,
		})
		ip.SetChecksum(^ip.CalculateChecksum())
	}
	udp := header.UDP(pkt[ipLen:])
	udp.Encode(&header.UDPFields{SrcPort: src.Port(), DstPort: dst.Port(), Length: uint16(udpLen)})
	xsum := header.PseudoHeaderChecksum(header.UDPProtocolNumber, srcA, dstA, uint16(udpLen))
	xsum = checksum.Checksum(payload, xsum)
	cs := ^udp.CalculateChecksum(xsum)
	if cs == 0 {
		cs = 0xffff // zero means "no checksum", forbidden over IPv6
	}
	udp.SetChecksum(cs)
	return b
}

// udpHeaderLen is the IP and UDP header length appendUDP writes for
// addresses of a's family.
func udpHeaderLen(a netip.Addr) int {
	if a.Is4() {
		return header.IPv4MinimumSize + header.UDPMinimumSize
	}
	return header.IPv6MinimumSize + header.UDPMinimumSize
}
