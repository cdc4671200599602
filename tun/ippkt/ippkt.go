// Package ippkt reads the headers of IPv4 and IPv6 packets: addresses,
// transport protocol, lengths and TCP/UDP ports. It trusts nothing in the
// packet, never panics and does not allocate on success, so the VPN, the
// exit router and its exit policy can run it on every packet.
package ippkt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Transport protocol numbers (IANA) that Parse reads ports for, and ICMP.
const (
	ProtoICMP   = 1
	ProtoTCP    = 6
	ProtoUDP    = 17
	ProtoICMPv6 = 58
)

const (
	ipv4MinHeader = 20
	ipv6Header    = 40
	tcpMinHeader  = 20
	udpHeader     = 8

	// maxExtHeaders bounds the IPv6 extension-header walk; real packets
	// carry two or three.
	maxExtHeaders = 8
)

var (
	// ErrTruncated: the packet is shorter than its headers or its length
	// field say.
	ErrTruncated = errors.New("ippkt: truncated packet")
	// ErrVersion: neither IPv4 nor IPv6.
	ErrVersion = errors.New("ippkt: not an IPv4 or IPv6 packet")
	// ErrMalformed: a header field is impossible.
	ErrMalformed = errors.New("ippkt: malformed packet")
)

// Packet is what Parse read from a packet's headers.
type Packet struct {
	Version  int // 4 or 6
	Src, Dst netip.Addr
	// Protocol is the transport protocol: IPv4's protocol field, or for
	// IPv6 the next header after any extension headers.
	Protocol uint8
	// HopLimit is IPv4's TTL or IPv6's hop limit.
	HopLimit uint8
	// HeaderLen is where the transport header starts: the IPv4 header with
	// options, or the IPv6 header with its extension headers.
	HeaderLen int
	// TotalLen is the packet's length by its own header. The buffer given
	// to Parse held at least this much; bytes after it are not the
	// packet's.
	TotalLen int
	// Fragment is set for any fragment of a fragmented datagram.
	Fragment bool
	// HasPorts is set when the TCP or UDP header is present (not a later
	// fragment); SrcPort and DstPort are valid then.
	HasPorts         bool
	SrcPort, DstPort uint16
}

// Parse reads the IP header of b and, for TCP and UDP, the ports.
func Parse(b []byte) (Packet, error) {
	if len(b) == 0 {
		return Packet{}, ErrTruncated
	}
	switch b[0] >> 4 {
	case 4:
		return parse4(b)
	case 6:
		return parse6(b)
	}
	return Packet{}, fmt.Errorf("%w: version %d", ErrVersion, b[0]>>4)
}

func parse4(b []byte) (Packet, error) {
	if len(b) < ipv4MinHeader {
		return Packet{}, fmt.Errorf("%w: %d bytes, IPv4 header is %d", ErrTruncated, len(b), ipv4MinHeader)
	}
	hlen := int(b[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(b[2:4]))
	switch {
	case hlen < ipv4MinHeader:
		return Packet{}, fmt.Errorf("%w: IPv4 header length %d", ErrMalformed, hlen)
	case total < hlen:
		return Packet{}, fmt.Errorf("%w: IPv4 total length %d < header length %d", ErrMalformed, total, hlen)
	case len(b) < total:
		return Packet{}, fmt.Errorf("%w: %d bytes, IPv4 total length %d", ErrTruncated, len(b), total)
	}
	fragField := binary.BigEndian.Uint16(b[6:8])
	moreFragments := fragField&0x2000 != 0
	fragOffset := fragField & 0x1fff
	p := Packet{
		Version:   4,
		Src:       netip.AddrFrom4([4]byte(b[12:16])),
		Dst:       netip.AddrFrom4([4]byte(b[16:20])),
		Protocol:  b[9],
		HopLimit:  b[8],
		HeaderLen: hlen,
		TotalLen:  total,
		Fragment:  moreFragments || fragOffset != 0,
	}
	if fragOffset == 0 {
		if err := p.readPorts(b[hlen:total]); err != nil {
			return Packet{}, err
		}
	}
	return p, nil
}

func parse6(b []byte) (Packet, error) {
	if len(b) < ipv6Header {
		return Packet{}, fmt.Errorf("%w: %d bytes, IPv6 header is %d", ErrTruncated, len(b), ipv6Header)
	}
	total := ipv6Header + int(binary.BigEndian.Uint16(b[4:6]))
	if len(b) < total {
		return Packet{}, fmt.Errorf("%w: %d bytes, IPv6 length %d", ErrTruncated, len(b), total)
	}
	p := Packet{
		Version:  6,
		Src:      netip.AddrFrom16([16]byte(b[8:24])),
		Dst:      netip.AddrFrom16([16]byte(b[24:40])),
		HopLimit: b[7],
		TotalLen: total,
	}
	next, off := b[6], ipv6Header
	firstFragment := true
	for i := 0; ; i++ {
		if i > maxExtHeaders {
			return Packet{}, fmt.Errorf("%w: more than %d IPv6 extension headers", ErrMalformed, maxExtHeaders)
		}
		var extLen int
		switch next {
		case 0, 43, 60: // hop-by-hop options, routing, destination options
			if off+2 > total {
				return Packet{}, fmt.Errorf("%w: IPv6 extension header %d", ErrTruncated, next)
			}
			extLen = (int(b[off+1]) + 1) * 8
		case 51: // authentication header
			if off+2 > total {
				return Packet{}, fmt.Errorf("%w: IPv6 authentication header", ErrTruncated)
			}
			extLen = (int(b[off+1]) + 2) * 4
		case 44: // fragment
			if off+8 > total {
				return Packet{}, fmt.Errorf("%w: IPv6 fragment header", ErrTruncated)
			}
			extLen = 8
			frag := binary.BigEndian.Uint16(b[off+2 : off+4])
			p.Fragment = true
			firstFragment = frag&0xfff8 == 0
		default:
			p.Protocol, p.HeaderLen = next, off
			if firstFragment {
				if err := p.readPorts(b[off:total]); err != nil {
					return Packet{}, err
				}
			}
			return p, nil
		}
		if off+extLen > total {
			return Packet{}, fmt.Errorf("%w: IPv6 extension header %d of %d bytes", ErrTruncated, next, extLen)
		}
		next = b[off]
		off += extLen
		if !firstFragment {
			// Later fragments carry no transport header.
			p.Protocol, p.HeaderLen = next, off
			return p, nil
		}
	}
}

// readPorts reads the TCP or UDP ports from the transport bytes of a
// packet (or first fragment). A header too short to be real is rejected:
// a tiny first fragment that splits the TCP header is how filters on ports
// get evaded (RFC 1858).
func (p *Packet) readPorts(transport []byte) error {
	var minLen int
	switch p.Protocol {
	case ProtoTCP:
		minLen = tcpMinHeader
	case ProtoUDP:
		minLen = udpHeader
	default:
		return nil
	}
	if len(transport) < minLen {
		return fmt.Errorf("%w: protocol %d header of %d bytes, need %d", ErrTruncated, p.Protocol, len(transport), minLen)
	}
	p.SrcPort = binary.BigEndian.Uint16(transport[0:2])
	p.DstPort = binary.BigEndian.Uint16(transport[2:4])
	p.HasPorts = true
	return nil
}
