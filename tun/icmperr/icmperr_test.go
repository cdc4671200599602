package icmperr

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/nym-go/nym/tun/ippkt"
)

var (
	router4 = netip.MustParseAddr("10.0.0.1")
	router6 = netip.MustParseAddr("fc00::1")
	host4   = netip.MustParseAddr("192.0.2.7")
	peer4   = netip.MustParseAddr("10.0.3.4")
	host6   = netip.MustParseAddr("2001:db8::7")
	peer6   = netip.MustParseAddr("fc00::3:4")
)

// v4 is a real IPv4 packet of total bytes: header (with options), then a
// transport header of proto and filler, with correct IP checksum.
func v4(src, dst netip.Addr, proto uint8, flags uint8, fragOff uint16, options []byte, transport []byte, total int) []byte {
	hlen := header.IPv4MinimumSize + len(options)
	b := make([]byte, total)
	ip := header.IPv4(b)
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(total), ID: 0x4242, Flags: flags, FragmentOffset: fragOff, TTL: 63, Protocol: proto,
		SrcAddr: tcpip.AddrFrom4(src.As4()), DstAddr: tcpip.AddrFrom4(dst.As4()),
	})
	copy(b[header.IPv4MinimumSize:], options)
	ip.SetHeaderLength(uint8(hlen))
	copy(b[hlen:], transport)
	for i := hlen + len(transport); i < total; i++ {
		b[i] = byte(i)
	}
	ip.SetChecksum(^ip.CalculateChecksum())
	return b
}

// v6 is a real IPv6 packet of total bytes whose payload starts with ext
// (extension headers, if any) and then transport.
func v6(src, dst netip.Addr, next uint8, ext, transport []byte, total int) []byte {
	b := make([]byte, total)
	header.IPv6(b).Encode(&header.IPv6Fields{
		PayloadLength: uint16(total - header.IPv6MinimumSize), TransportProtocol: tcpip.TransportProtocolNumber(next), HopLimit: 63,
		SrcAddr: tcpip.AddrFrom16(src.As16()), DstAddr: tcpip.AddrFrom16(dst.As16()),
	})
	n := copy(b[header.IPv6MinimumSize:], ext)
	n += copy(b[header.IPv6MinimumSize+n:], transport)
	for i := header.IPv6MinimumSize + n; i < total; i++ {
		b[i] = byte(i)
	}
	return b
}

func tcpHdr() []byte {
	h := make([]byte, 20)
	binary.BigEndian.PutUint16(h[0:], 443)
	binary.BigEndian.PutUint16(h[2:], 40000)
	binary.BigEndian.PutUint32(h[4:], 0xdeadbeef)
	h[12] = 5 << 4
	return h
}

func udpHdr() []byte {
	h := make([]byte, 8)
	binary.BigEndian.PutUint16(h[0:], 53)
	binary.BigEndian.PutUint16(h[2:], 5353)
	return h
}

func icmpHdr(typ uint8) []byte { return []byte{typ, 0, 0, 0, 0, 1, 0, 1} }

const df = header.IPv4FlagDontFragment

// validate checks that out is the right error for orig: a well-formed IP
// packet from router to orig's source, parsed with gVisor's header package,
// with the right type, code, MTU, checksums and quoted bytes.
func validate(orig, out []byte, router netip.Addr, mtu int) error {
	o, err := ippkt.Parse(orig)
	if err != nil {
		return fmt.Errorf("an error for an unparsable original: %v", err)
	}
	orig = orig[:o.TotalLen]
	if !router.IsValid() {
		router = o.Dst
	}
	if p, err := ippkt.Parse(out); err != nil || p.TotalLen != len(out) {
		return fmt.Errorf("ippkt does not read the error: %v (%d of %d bytes)", err, p.TotalLen, len(out))
	}
	switch header.IPVersion(out) {
	case header.IPv4Version:
		ip := header.IPv4(out)
		switch {
		case !ip.IsValid(len(out)) || int(ip.TotalLength()) != len(out) || ip.HeaderLength() != header.IPv4MinimumSize:
			return errors.New("invalid IPv4 header")
		case !ip.IsChecksumValid():
			return errors.New("bad IPv4 header checksum")
		case ip.TransportProtocol() != header.ICMPv4ProtocolNumber || ip.TTL() == 0 || ip.More() || ip.FragmentOffset() != 0:
			return fmt.Errorf("protocol %d, TTL %d, fragment fields %#x", ip.Protocol(), ip.TTL(), ip.FragmentOffset())
		case ip.SourceAddress() != tcpip.AddrFrom4(router.As4()) || ip.DestinationAddress() != tcpip.AddrFrom4(o.Src.As4()):
			return fmt.Errorf("%v → %v, want %v → %v", ip.SourceAddress(), ip.DestinationAddress(), router, o.Src)
		}
		icmp := header.ICMPv4(ip.Payload())
		switch {
		case len(icmp) < header.ICMPv4MinimumSize:
			return errors.New("short ICMP")
		case icmp.Type() != header.ICMPv4DstUnreachable || icmp.Code() != header.ICMPv4FragmentationNeeded:
			return fmt.Errorf("ICMP type %d code %d", icmp.Type(), icmp.Code())
		case int(icmp.MTU()) != mtu:
			return fmt.Errorf("next-hop MTU %d, want %d", icmp.MTU(), mtu)
		case checksum.Checksum(icmp, 0) != 0xffff:
			return errors.New("bad ICMP checksum")
		case !bytes.Equal(icmp.Payload(), orig[:min(len(orig), o.HeaderLen+8)]):
			return fmt.Errorf("quoted %d bytes, want the header (%d) and 8 bytes", len(icmp.Payload()), o.HeaderLen)
		case len(out) > 576:
			return fmt.Errorf("%d-byte IPv4 error", len(out))
		}
	case header.IPv6Version:
		ip := header.IPv6(out)
		switch {
		case !ip.IsValid(len(out)) || header.IPv6MinimumSize+int(ip.PayloadLength()) != len(out):
			return errors.New("invalid IPv6 header")
		case len(out) > header.IPv6MinimumMTU:
			return fmt.Errorf("%d-byte IPv6 error exceeds the minimum MTU", len(out))
		case ip.TransportProtocol() != header.ICMPv6ProtocolNumber || ip.HopLimit() == 0:
			return fmt.Errorf("next header %d, hop limit %d", ip.NextHeader(), ip.HopLimit())
		case ip.SourceAddress() != tcpip.AddrFrom16(router.As16()) || ip.DestinationAddress() != tcpip.AddrFrom16(o.Src.As16()):
			return fmt.Errorf("%v → %v, want %v → %v", ip.SourceAddress(), ip.DestinationAddress(), router, o.Src)
		}
		icmp := header.ICMPv6(ip.Payload())
		want := header.ICMPv6Checksum(header.ICMPv6ChecksumParams{
			Header: icmp[:header.ICMPv6PacketTooBigMinimumSize], Src: ip.SourceAddress(), Dst: ip.DestinationAddress(),
			PayloadCsum: checksum.Checksum(icmp.Payload(), 0), PayloadLen: len(icmp.Payload()),
		})
		wantQuote := min(len(orig), header.IPv6MinimumMTU-header.IPv6MinimumSize-header.ICMPv6PacketTooBigMinimumSize)
		switch {
		case icmp.Type() != header.ICMPv6PacketTooBig || icmp.Code() != 0:
			return fmt.Errorf("ICMPv6 type %d code %d", icmp.Type(), icmp.Code())
		case int(icmp.MTU()) != mtu:
			return fmt.Errorf("MTU %d, want %d", icmp.MTU(), mtu)
		case icmp.Checksum() != want:
			return fmt.Errorf("ICMPv6 checksum %#04x, want %#04x", icmp.Checksum(), want)
		case !bytes.Equal(icmp.Payload(), orig[:wantQuote]):
			return fmt.Errorf("quoted %d bytes, want the first %d of the original", len(icmp.Payload()), wantQuote)
		}
	default:
		return fmt.Errorf("IP version %d", header.IPVersion(out))
	}
	return nil
}

func TestTooBig(t *testing.T) {
	ipOptions := []byte{1, 1, 1, 0} // NOP NOP NOP EOL: a 24-byte header
	hopByHop := []byte{ippkt.ProtoTCP, 0, 1, 4, 0, 0, 0, 0}
	tests := []struct {
		name   string
		pkt    []byte
		router netip.Addr
		mtu    int
	}{
		{"v4 TCP", v4(host4, peer4, ippkt.ProtoTCP, df, 0, nil, tcpHdr(), 2000), router4, 1500},
		{"v4 UDP with options", v4(host4, peer4, ippkt.ProtoUDP, df, 0, ipOptions, udpHdr(), 1600), router4, 1537},
		{"v4 echo request", v4(host4, peer4, ippkt.ProtoICMP, df, 0, nil, icmpHdr(8), 1600), router4, 1280},
		{"v4 first fragment with DF", v4(host4, peer4, ippkt.ProtoUDP, df|header.IPv4FlagMoreFragments, 0, nil, udpHdr(), 1600), router4, 1500},
		{"v4 trailing bytes past total length", append(v4(host4, peer4, ippkt.ProtoTCP, df, 0, nil, tcpHdr(), 1600), 9, 9, 9), router4, 1500},
		{"v4 MTU above 16 bits is capped", v4(host4, peer4, ippkt.ProtoTCP, df, 0, nil, tcpHdr(), 65535), router4, 65534},
		{"v6 TCP, quote cut at 1280", v6(host6, peer6, ippkt.ProtoTCP, nil, tcpHdr(), 9000), router6, 1537},
		{"v6 UDP, small quote", v6(host6, peer6, ippkt.ProtoUDP, nil, udpHdr(), 1300), router6, 1280},
		{"v6 echo request", v6(host6, peer6, ippkt.ProtoICMPv6, nil, icmpHdr(128), 1500), router6, 1400},
		{"v6 hop-by-hop then TCP", v6(host6, peer6, 0, hopByHop, tcpHdr(), 1500), router6, 1400},
		{"v4 from the original's destination", v4(host4, peer4, ippkt.ProtoTCP, df, 0, nil, tcpHdr(), 1600), netip.Addr{}, 1500},
		{"v6 from the original's destination", v6(host6, peer6, ippkt.ProtoTCP, nil, tcpHdr(), 1600), netip.Addr{}, 1500},
		{"v6 to multicast (RFC 4443 2.4 e.3)", v6(host6, netip.MustParseAddr("ff0e::1"), ippkt.ProtoUDP, nil, udpHdr(), 1500), router6, 1400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			orig := bytes.Clone(tc.pkt)
			out, err := TooBig(tc.pkt, tc.router, tc.mtu)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(orig, tc.pkt) {
				t.Fatal("TooBig modified its input")
			}
			if err := validate(tc.pkt, out, tc.router, min(tc.mtu, 0xffff)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestTooBigRefuses(t *testing.T) {
	bigTCP4 := func(src, dst netip.Addr) []byte { return v4(src, dst, ippkt.ProtoTCP, df, 0, nil, tcpHdr(), 1600) }
	bigTCP6 := func(src, dst netip.Addr) []byte { return v6(src, dst, ippkt.ProtoTCP, nil, tcpHdr(), 1600) }
	frag6 := func(offset uint16, next uint8, transport []byte) []byte {
		ext := []byte{next, 0, 0, 0, 0, 0, 0, 1}
		binary.BigEndian.PutUint16(ext[2:], offset<<3|1)
		return v6(host6, peer6, 44, ext, transport, 1600)
	}
	tests := []struct {
		name   string
		pkt    []byte
		router netip.Addr
		mtu    int
		want   error
	}{
		{"empty", nil, router4, 1500, ErrMalformed},
		{"not IP", bytes.Repeat([]byte{0x15}, 1600), router4, 1500, ErrMalformed},
		{"v4 truncated", bigTCP4(host4, peer4)[:1000], router4, 500, ErrMalformed},
		{"v4 fits", bigTCP4(host4, peer4), router4, 1600, ErrNotTooBig},
		{"v6 fits", bigTCP6(host6, peer6), router6, 1600, ErrNotTooBig},
		{"v4 from a v6 router", bigTCP4(host4, peer4), router6, 1500, ErrBadParams},
		{"v6 from a v4 router", bigTCP6(host6, peer6), router4, 1500, ErrBadParams},
		{"v4 MTU below 68", bigTCP4(host4, peer4), router4, 67, ErrBadParams},
		{"v6 MTU below 1280", bigTCP6(host6, peer6), router6, 1279, ErrBadParams},
		{"v6 from a multicast router", bigTCP6(host6, peer6), netip.MustParseAddr("ff02::2"), 1500, ErrBadParams},
		{"v4 from the destination, multicast", bigTCP4(host4, netip.MustParseAddr("224.0.0.9")), netip.Addr{}, 1500, ErrBadParams},
		{"v6 from the destination, multicast", bigTCP6(host6, netip.MustParseAddr("ff0e::1")), netip.Addr{}, 1500, ErrBadParams},
		{"v4 without DF", v4(host4, peer4, ippkt.ProtoTCP, 0, 0, nil, tcpHdr(), 1600), router4, 1500, ErrForbidden},
		{"v4 later fragment", v4(host4, peer4, ippkt.ProtoTCP, df, 185, nil, nil, 1600), router4, 1500, ErrForbidden},
		{"v4 ICMP error", v4(host4, peer4, ippkt.ProtoICMP, df, 0, nil, icmpHdr(3), 1600), router4, 1500, ErrForbidden},
		{"v4 unknown ICMP type", v4(host4, peer4, ippkt.ProtoICMP, df, 0, nil, icmpHdr(200), 1600), router4, 1500, ErrForbidden},
		{"v4 from 0.0.0.0", bigTCP4(netip.IPv4Unspecified(), peer4), router4, 1500, ErrForbidden},
		{"v4 from loopback", bigTCP4(netip.MustParseAddr("127.0.0.1"), peer4), router4, 1500, ErrForbidden},
		{"v4 from multicast", bigTCP4(netip.MustParseAddr("224.0.0.1"), peer4), router4, 1500, ErrForbidden},
		{"v4 from broadcast", bigTCP4(netip.MustParseAddr("255.255.255.255"), peer4), router4, 1500, ErrForbidden},
		{"v4 from class E", bigTCP4(netip.MustParseAddr("240.0.0.1"), peer4), router4, 1500, ErrForbidden},
		{"v4 to multicast", bigTCP4(host4, netip.MustParseAddr("239.1.2.3")), router4, 1500, ErrForbidden},
		{"v4 to broadcast", bigTCP4(host4, netip.MustParseAddr("255.255.255.255")), router4, 1500, ErrForbidden},
		{"v6 ICMPv6 error", v6(host6, peer6, ippkt.ProtoICMPv6, nil, icmpHdr(1), 1600), router6, 1500, ErrForbidden},
		{"v6 ICMPv6 packet too big", v6(host6, peer6, ippkt.ProtoICMPv6, nil, icmpHdr(2), 1600), router6, 1500, ErrForbidden},
		{"v6 truncated ICMPv6", v6(host6, peer6, 0, append([]byte{ippkt.ProtoICMPv6, 160}, make([]byte, 1286)...), nil, 40+1288+4), router6, 1280, ErrForbidden},
		{"v6 fragmented ICMPv6", frag6(0, ippkt.ProtoICMPv6, icmpHdr(128)), router6, 1500, ErrForbidden},
		{"v6 from ::", bigTCP6(netip.IPv6Unspecified(), peer6), router6, 1500, ErrForbidden},
		{"v6 from multicast", bigTCP6(netip.MustParseAddr("ff02::1"), peer6), router6, 1500, ErrForbidden},
		{"v6 from loopback", bigTCP6(netip.IPv6Loopback(), peer6), router6, 1500, ErrForbidden},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := TooBig(tc.pkt, tc.router, tc.mtu)
			if !errors.Is(err, tc.want) || out != nil {
				t.Fatalf("TooBig = %d bytes, %v; want nothing and %v", len(out), err, tc.want)
			}
		})
	}

	// A later IPv6 fragment of a UDP datagram may be answered: it holds
	// no ICMPv6 message and its sender needs the MTU as much.
	pkt := frag6(100, ippkt.ProtoUDP, nil)
	out, err := TooBig(pkt, router6, 1500)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate(pkt, out, router6, 1500); err != nil {
		t.Fatal(err)
	}
}

func TestResponderLimitsRate(t *testing.T) {
	r := NewResponder(router4, router6, 10, 3)
	big4 := v4(host4, peer4, ippkt.ProtoTCP, df, 0, nil, tcpHdr(), 1600)
	big6 := v6(host6, peer6, ippkt.ProtoTCP, nil, tcpHdr(), 1600)
	noDF := v4(host4, peer4, ippkt.ProtoTCP, 0, 0, nil, tcpHdr(), 1600)
	now := time.Unix(1000, 0)

	// Refused packets spend no token.
	for range 10 {
		if _, err := r.TooBig(noDF, 1500, now); !errors.Is(err, ErrForbidden) {
			t.Fatalf("no DF: %v", err)
		}
	}
	for i, pkt := range [][]byte{big4, big6, big4} {
		out, err := r.TooBig(pkt, 1500, now)
		if err != nil {
			t.Fatalf("error %d within the burst: %v", i, err)
		}
		router := router4
		if i == 1 {
			router = router6
		}
		if err := validate(pkt, out, router, 1500); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.TooBig(big4, 1500, now); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("past the burst: %v", err)
	}
	// A clock stepping back earns nothing; 100 ms later, one token.
	if _, err := r.TooBig(big4, 1500, now.Add(-time.Hour)); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("clock stepped back: %v", err)
	}
	if _, err := r.TooBig(big4, 1500, now.Add(100*time.Millisecond)); err != nil {
		t.Fatalf("after a refill: %v", err)
	}
	if _, err := r.TooBig(big4, 1500, now.Add(100*time.Millisecond)); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("the refill gave more than one: %v", err)
	}
	// A long pause refills only up to the burst.
	later := now.Add(time.Hour)
	for i := range 4 {
		_, err := r.TooBig(big6, 1500, later)
		if (i < 3) != (err == nil) {
			t.Fatalf("error %d after a long pause: %v", i, err)
		}
	}
}

// FuzzTooBig: on any bytes, TooBig does not panic, and what it returns is
// nothing or the right, well-formed error.
func FuzzTooBig(f *testing.F) {
	f.Add(v4(host4, peer4, ippkt.ProtoTCP, df, 0, nil, tcpHdr(), 200), 100, false, false)
	f.Add(v4(host4, peer4, ippkt.ProtoICMP, df, 0, []byte{1, 1, 1, 0}, icmpHdr(8), 120), 68, false, true)
	f.Add(v6(host6, peer6, ippkt.ProtoTCP, nil, tcpHdr(), 1400), 1280, true, true)
	f.Add(v6(host6, peer6, 0, []byte{ippkt.ProtoICMPv6, 0, 1, 4, 0, 0, 0, 0}, icmpHdr(128), 1400), 1280, true, false)
	f.Add([]byte{0x45}, 0, false, false)
	f.Fuzz(func(t *testing.T, pkt []byte, mtu int, six, fromDst bool) {
		router := router4
		if six {
			router = router6
		}
		if fromDst {
			router = netip.Addr{}
		}
		orig := bytes.Clone(pkt)
		out, err := TooBig(pkt, router, mtu)
		if !bytes.Equal(orig, pkt) {
			t.Fatal("TooBig modified its input")
		}
		if err != nil {
			if out != nil {
				t.Fatalf("%d bytes with error %v", len(out), err)
			}
			return
		}
		if err := validate(pkt, out, router, min(mtu, 0xffff)); err != nil {
			t.Fatal(err)
		}
	})
}
