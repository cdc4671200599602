package wgnest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"

	"github.com/nym-go/nym/tun/ippkt"
)

// Datagram is one WireGuard message of the inner tunnel as it travels inside
// the outer tunnel: a UDP datagram in an IP packet.
//
//	IPv4: header 20 bytes (no options; DF set, TTL 64, protocol 17, header checksum)
//	IPv6: header 40 bytes (no extension headers; next header 17, hop limit 64)
//	UDP:  source port 2 | destination port 2 | length 2 | checksum 2
//	      payload: the WireGuard message
//
// Src and Dst are of one family. Marshal always sets the UDP checksum (IPv6
// requires it); Parse does not check it, since the packet was just
// authenticated by the outer tunnel's AEAD, which a checksum cannot add to.
type Datagram struct {
	Src, Dst netip.AddrPort
	Payload  []byte
}

const (
	ipv4HeaderLen = 20
	ipv6HeaderLen = 40
	udpHeaderLen  = 8
	protoUDP      = 17
)

// Errors of Marshal and Parse.
var (
	ErrFamily    = errors.New("wgnest: source and destination of different families")
	ErrTooLong   = errors.New("wgnest: datagram too long")
	ErrNotUDP    = errors.New("wgnest: not a UDP datagram")
	ErrBadLength = errors.New("wgnest: bad UDP length")
)

// HeaderLen is the IP and UDP header length of a datagram to dst.
func HeaderLen(dst netip.Addr) int {
	if dst.Is4() {
		return ipv4HeaderLen + udpHeaderLen
	}
	return ipv6HeaderLen + udpHeaderLen
}

// Marshal writes d into b and returns its length. b must hold
// HeaderLen(d.Dst.Addr()) + len(d.Payload) bytes.
func (d Datagram) Marshal(b []byte) (int, error) {
	src, dst := d.Src.Addr().Unmap(), d.Dst.Addr().Unmap()
	if !src.IsValid() || !dst.IsValid() || src.Is4() != dst.Is4() {
		return 0, ErrFamily
	}
	hl := HeaderLen(dst)
	n := hl + len(d.Payload)
	udpLen := udpHeaderLen + len(d.Payload)
	if udpLen > 0xffff || (dst.Is4() && n > 0xffff) {
		return 0, fmt.Errorf("%w: %d bytes", ErrTooLong, n)
	}
	if len(b) < n {
		return 0, fmt.Errorf("%w: %d bytes into a buffer of %d", ErrTooLong, n, len(b))
	}
	b = b[:n]
	if dst.Is4() {
		ip := b[:ipv4HeaderLen]
		clear(ip)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(n))
		binary.BigEndian.PutUint16(ip[6:], 0x4000) // DF: the sizes are chosen so nothing fragments
		ip[8] = 64
		ip[9] = protoUDP
		s, t := src.As4(), dst.As4()
		copy(ip[12:16], s[:])
		copy(ip[16:20], t[:])
		binary.BigEndian.PutUint16(ip[10:], ^checksum.Checksum(ip, 0))
	} else {
		ip := b[:ipv6HeaderLen]
		clear(ip)
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(udpLen))
		ip[6] = protoUDP
		ip[7] = 64
		s, t := src.As16(), dst.As16()
		copy(ip[8:24], s[:])
		copy(ip[24:40], t[:])
	}
	u := b[hl-udpHeaderLen : hl]
	binary.BigEndian.PutUint16(u[0:], d.Src.Port())
	binary.BigEndian.PutUint16(u[2:], d.Dst.Port())
	binary.BigEndian.PutUint16(u[4:], uint16(udpLen))
	u[6], u[7] = 0, 0
	copy(b[hl:], d.Payload)
	sum := udpChecksum(src, dst, b[hl-udpHeaderLen:])
	binary.BigEndian.PutUint16(u[6:], sum)
	return n, nil
}

// udpChecksum is the UDP checksum of seg (header and payload, checksum
// field zero) between src and dst (RFC 768, RFC 8200 section 8.1).
func udpChecksum(src, dst netip.Addr, seg []byte) uint16 {
	var pseudo [40]byte
	var p []byte
	if src.Is4() {
		s, d := src.As4(), dst.As4()
		p = append(append(pseudo[:0], s[:]...), d[:]...)
		p = append(p, 0, protoUDP, byte(len(seg)>>8), byte(len(seg)))
	} else {
		s, d := src.As16(), dst.As16()
		p = append(append(pseudo[:0], s[:]...), d[:]...)
		p = binary.BigEndian.AppendUint32(p, uint32(len(seg)))
		p = append(p, 0, 0, 0, protoUDP)
	}
	sum := ^checksum.Checksum(seg, checksum.Checksum(p, 0))
	if sum == 0 {
		return 0xffff // zero means "no checksum" in UDP over IPv4 and is invalid over IPv6
	}
	return sum
}

// ParseDatagram reads an IPv4 or IPv6 packet carrying one unfragmented UDP
// datagram. Payload aliases b.
func ParseDatagram(b []byte) (Datagram, error) {
	p, err := ippkt.Parse(b)
	if err != nil {
		return Datagram{}, err
	}
	if p.Protocol != protoUDP || p.Fragment || !p.HasPorts {
		return Datagram{}, ErrNotUDP
	}
	seg := b[p.HeaderLen:p.TotalLen]
	if len(seg) < udpHeaderLen {
		return Datagram{}, ErrBadLength
	}
	ul := int(binary.BigEndian.Uint16(seg[4:]))
	if ul < udpHeaderLen || ul > len(seg) {
		return Datagram{}, fmt.Errorf("%w: %d in a segment of %d", ErrBadLength, ul, len(seg))
	}
	return Datagram{
		Src:     netip.AddrPortFrom(p.Src, p.SrcPort),
		Dst:     netip.AddrPortFrom(p.Dst, p.DstPort),
		Payload: seg[udpHeaderLen:ul],
	}, nil
}
