// Package testpkt builds real IPv4 and IPv6 packets for tests, with correct
// lengths and checksums, so that code under test sees what a kernel would
// hand it.
package testpkt

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/nym-go/nym/tun/ippkt"
)

// checksum is the Internet checksum (RFC 1071) of the concatenated parts.
func Checksum(parts ...[]byte) uint16 {
	var sum uint32
	var odd bool
	var carry byte
	for _, p := range parts {
		for _, b := range p {
			if odd {
				sum += uint32(carry)<<8 | uint32(b)
			} else {
				carry = b
			}
			odd = !odd
		}
	}
	if odd {
		sum += uint32(carry) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// transport builds a UDP, TCP or ICMP(v6) header and payload; the checksum
// field is left zero, at csumAt.
func transport(proto uint8, dstPort uint16, payload []byte) (seg []byte, csumAt int) {
	switch proto {
	case ippkt.ProtoUDP:
		seg = make([]byte, 8, 8+len(payload))
		binary.BigEndian.PutUint16(seg[0:], 40000)
		binary.BigEndian.PutUint16(seg[2:], dstPort)
		binary.BigEndian.PutUint16(seg[4:], uint16(8+len(payload)))
		return append(seg, payload...), 6
	case ippkt.ProtoTCP:
		seg = make([]byte, 20, 20+len(payload))
		binary.BigEndian.PutUint16(seg[0:], 40000)
		binary.BigEndian.PutUint16(seg[2:], dstPort)
		binary.BigEndian.PutUint32(seg[4:], 1)
		seg[12] = 5 << 4 // data offset
		seg[13] = 0x18   // PSH, ACK
		binary.BigEndian.PutUint16(seg[14:], 65535)
		return append(seg, payload...), 16
	default: // ICMP or ICMPv6 echo request
		seg = make([]byte, 8, 8+len(payload))
		if proto == 58 {
			seg[0] = 128
		} else {
			seg[0] = 8
		}
		binary.BigEndian.PutUint16(seg[4:], 1) // identifier
		return append(seg, payload...), 2
	}
}

// IPv4 builds an IPv4 packet from src to dst of transport protocol proto
// (UDP, TCP or ICMP) with payload, lengths and checksums right.
func IPv4(t testing.TB, src, dst netip.Addr, proto uint8, dstPort uint16, payload []byte) []byte {
	t.Helper()
	if !src.Is4() || !dst.Is4() {
		t.Fatalf("testpkt.IPv4: %v → %v", src, dst)
	}
	seg, at := transport(proto, dstPort, payload)
	h := make([]byte, 20, 20+len(seg))
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(seg)))
	binary.BigEndian.PutUint16(h[4:], 0x1234) // id
	h[6] = 0x40                               // DF
	h[8] = 64
	h[9] = proto
	s, d := src.As4(), dst.As4()
	copy(h[12:], s[:])
	copy(h[16:], d[:])
	binary.BigEndian.PutUint16(h[10:], Checksum(h))
	if proto == ippkt.ProtoUDP || proto == ippkt.ProtoTCP {
		pseudo := make([]byte, 12)
		copy(pseudo, s[:])
		copy(pseudo[4:], d[:])
		pseudo[9] = proto
		binary.BigEndian.PutUint16(pseudo[10:], uint16(len(seg)))
		binary.BigEndian.PutUint16(seg[at:], Checksum(pseudo, seg))
	} else {
		binary.BigEndian.PutUint16(seg[at:], Checksum(seg))
	}
	return append(h, seg...)
}

// IPv6 builds an IPv6 packet as IPv4 does.
func IPv6(t testing.TB, src, dst netip.Addr, proto uint8, dstPort uint16, payload []byte) []byte {
	t.Helper()
	if !src.Is6() || !dst.Is6() {
		t.Fatalf("testpkt.IPv6: %v → %v", src, dst)
	}
	seg, at := transport(proto, dstPort, payload)
	h := make([]byte, 40, 40+len(seg))
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:], uint16(len(seg)))
	h[6] = proto
	h[7] = 64
	s, d := src.As16(), dst.As16()
	copy(h[8:], s[:])
	copy(h[24:], d[:])
	pseudo := make([]byte, 40)
	copy(pseudo, s[:])
	copy(pseudo[16:], d[:])
	binary.BigEndian.PutUint32(pseudo[32:], uint32(len(seg)))
	pseudo[39] = proto
	binary.BigEndian.PutUint16(seg[at:], Checksum(pseudo, seg))
	return append(h, seg...)
}

// UDP4 and UDP6 are the common case: a UDP datagram to port.
func UDP4(t testing.TB, src, dst string, port uint16, payload string) []byte {
	return IPv4(t, netip.MustParseAddr(src), netip.MustParseAddr(dst), ippkt.ProtoUDP, port, []byte(payload))
}

// UDP6 is UDP4 for IPv6.
func UDP6(t testing.TB, src, dst string, port uint16, payload string) []byte {
	return IPv6(t, netip.MustParseAddr(src), netip.MustParseAddr(dst), ippkt.ProtoUDP, port, []byte(payload))
}
