package ipr

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// IP protocol numbers the router looks into.
const (
	protoHopByHop = 0
	protoTCP      = 6
	protoUDP      = 17
	protoDCCP     = 33
	protoRouting  = 43
	protoFragment = 44
	protoAH       = 51
	protoDestOpts = 60
	protoSCTP     = 132
	protoUDPLite  = 136
)

// maxExtHeaders bounds the IPv6 extension headers we walk to find the
// transport protocol; a packet with more is refused rather than walked.
const maxExtHeaders = 8

var errBadPacket = errors.New("ipr: malformed IP packet")

// ipHeader is what the router needs from an IP packet.
type ipHeader struct {
	src, dst netip.Addr
	proto    uint8  // transport protocol, after any IPv6 extension headers
	dstPort  uint16 // 0 when the protocol has no ports or this is a later fragment
}

// parseIP reads an IPv4 or IPv6 header and checks that the packet is exactly
// as long as the header says.
func parseIP(pkt []byte) (ipHeader, error) {
	if len(pkt) == 0 {
		return ipHeader{}, fmt.Errorf("%w: empty", errBadPacket)
	}
	switch pkt[0] >> 4 {
	case 4:
		return parseIPv4(pkt)
	case 6:
		return parseIPv6(pkt)
	}
	return ipHeader{}, fmt.Errorf("%w: version %d", errBadPacket, pkt[0]>>4)
}

func parseIPv4(pkt []byte) (ipHeader, error) {
	if len(pkt) < 20 {
		return ipHeader{}, fmt.Errorf("%w: %d bytes is shorter than an IPv4 header", errBadPacket, len(pkt))
	}
	ihl := int(pkt[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(pkt[2:]))
	if ihl < 20 || total != len(pkt) || ihl > total {
		return ipHeader{}, fmt.Errorf("%w: IPv4 header length %d, total %d, have %d", errBadPacket, ihl, total, len(pkt))
	}
	h := ipHeader{
		src:   netip.AddrFrom4([4]byte(pkt[12:16])),
		dst:   netip.AddrFrom4([4]byte(pkt[16:20])),
		proto: pkt[9],
	}
	fragOffset := binary.BigEndian.Uint16(pkt[6:]) & 0x1fff
	if fragOffset == 0 {
		h.dstPort = portOf(h.proto, pkt[ihl:])
	}
	return h, nil
}

func parseIPv6(pkt []byte) (ipHeader, error) {
	if len(pkt) < 40 {
		return ipHeader{}, fmt.Errorf("%w: %d bytes is shorter than an IPv6 header", errBadPacket, len(pkt))
	}
	// A payload length of 0 would mean a jumbogram, which never fits a
	// bundle, so it is refused like any other mismatch.
	if payload := int(binary.BigEndian.Uint16(pkt[4:])); payload+40 != len(pkt) {
		return ipHeader{}, fmt.Errorf("%w: IPv6 payload length %d, have %d", errBadPacket, payload, len(pkt)-40)
	}
	h := ipHeader{
		src: netip.AddrFrom16([16]byte(pkt[8:24])),
		dst: netip.AddrFrom16([16]byte(pkt[24:40])),
	}
	next, rest := pkt[6], pkt[40:]
	firstFragment := true
	for range maxExtHeaders {
		var size int
		switch next {
		case protoHopByHop, protoRouting, protoDestOpts:
			if len(rest) < 8 {
				return ipHeader{}, fmt.Errorf("%w: IPv6 extension header cut short", errBadPacket)
			}
			size = (int(rest[1]) + 1) * 8
		case protoFragment:
			if len(rest) < 8 {
				return ipHeader{}, fmt.Errorf("%w: IPv6 fragment header cut short", errBadPacket)
			}
			size = 8
			firstFragment = binary.BigEndian.Uint16(rest[2:])&0xfff8 == 0
		case protoAH:
			if len(rest) < 8 {
				return ipHeader{}, fmt.Errorf("%w: IPv6 AH header cut short", errBadPacket)
			}
			size = (int(rest[1]) + 2) * 4
		default:
			h.proto = next
			if firstFragment {
				h.dstPort = portOf(next, rest)
			}
			return h, nil
		}
		if size > len(rest) {
			return ipHeader{}, fmt.Errorf("%w: IPv6 extension header longer than the packet", errBadPacket)
		}
		next, rest = rest[0], rest[size:]
	}
	return ipHeader{}, fmt.Errorf("%w: more than %d IPv6 extension headers", errBadPacket, maxExtHeaders)
}

// portOf returns the destination port of a transport header, or 0.
func portOf(proto uint8, transport []byte) uint16 {
	switch proto {
	case protoTCP, protoUDP, protoDCCP, protoSCTP, protoUDPLite:
		if len(transport) >= 4 {
			return binary.BigEndian.Uint16(transport[2:])
		}
	}
	return 0
}
