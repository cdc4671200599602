package ipr

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/nym-go/nym/tun/ippkt"
)

// Real IPv4 and IPv6 packets for the tests, with correct lengths and
// checksums, so the router sees what a kernel would hand it.

// checksum is the Internet checksum (RFC 1071) of the concatenated parts.
func checksum(parts ...[]byte) uint16 {
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
// field is left zero for fillChecksum.
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

func ipv4Packet(t testing.TB, src, dst netip.Addr, proto uint8, dstPort uint16, payload []byte) []byte {
	t.Helper()
	if !src.Is4() || !dst.Is4() {
		t.Fatalf("ipv4Packet: %v → %v", src, dst)
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
	binary.BigEndian.PutUint16(h[10:], checksum(h))
	if proto == ippkt.ProtoUDP || proto == ippkt.ProtoTCP {
		pseudo := make([]byte, 12)
		copy(pseudo, s[:])
		copy(pseudo[4:], d[:])
		pseudo[9] = proto
		binary.BigEndian.PutUint16(pseudo[10:], uint16(len(seg)))
		binary.BigEndian.PutUint16(seg[at:], checksum(pseudo, seg))
	} else {
		binary.BigEndian.PutUint16(seg[at:], checksum(seg))
	}
	return append(h, seg...)
}

func ipv6Packet(t testing.TB, src, dst netip.Addr, proto uint8, dstPort uint16, payload []byte) []byte {
	t.Helper()
	if !src.Is6() || !dst.Is6() {
		t.Fatalf("ipv6Packet: %v → %v", src, dst)
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
	binary.BigEndian.PutUint16(seg[at:], checksum(pseudo, seg))
	return append(h, seg...)
}

// udp4 and udp6 are the common case.
func udp4(t testing.TB, src, dst string, port uint16, payload string) []byte {
	return ipv4Packet(t, netip.MustParseAddr(src), netip.MustParseAddr(dst), ippkt.ProtoUDP, port, []byte(payload))
}

func udp6(t testing.TB, src, dst string, port uint16, payload string) []byte {
	return ipv6Packet(t, netip.MustParseAddr(src), netip.MustParseAddr(dst), ippkt.ProtoUDP, port, []byte(payload))
}

func TestTestPacketsAreValid(t *testing.T) {
	p4 := ipv4Packet(t, netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("192.0.2.1"), ippkt.ProtoTCP, 443, []byte("hi"))
	if checksum(p4[:20]) != 0 {
		t.Fatal("IPv4 header checksum does not verify")
	}
	pseudo := append(append(append([]byte{}, p4[12:20]...), 0, ippkt.ProtoTCP), 0, byte(len(p4)-20))
	if checksum(pseudo, p4[20:]) != 0 {
		t.Fatal("TCP checksum does not verify")
	}
	h, err := parseIP(p4)
	if err != nil || h.DstPort != 443 || h.Proto != ippkt.ProtoTCP {
		t.Fatalf("parseIP = %+v, %v", h, err)
	}
	p6 := udp6(t, "fc00::2", "2001:db8::1", 53, "q")
	if h, err := parseIP(p6); err != nil || h.DstPort != 53 || h.Src != netip.MustParseAddr("fc00::2") {
		t.Fatalf("parseIP = %+v, %v", h, err)
	}
}
