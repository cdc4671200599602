package ippkt

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
)

// ipv4 builds an IPv4 packet: a 20-byte header plus options, then payload.
func ipv4(proto uint8, src, dst string, options, payload []byte) []byte {
	hlen := 20 + len(options)
	b := make([]byte, hlen+len(payload))
	b[0] = 0x40 | byte(hlen/4)
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	b[8] = 64
	b[9] = proto
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	copy(b[20:], options)
	copy(b[hlen:], payload)
	return b
}

// ipv6 builds an IPv6 packet whose payload starts with next header nh.
func ipv6(nh uint8, src, dst string, payload []byte) []byte {
	b := make([]byte, 40+len(payload))
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], uint16(len(payload)))
	b[6] = nh
	b[7] = 255
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	copy(b[40:], payload)
	return b
}

// ports is a transport header of n bytes starting with the two ports.
func ports(src, dst uint16, n int) []byte {
	b := make([]byte, n)
	binary.BigEndian.PutUint16(b[0:], src)
	binary.BigEndian.PutUint16(b[2:], dst)
	return b
}

func TestParse(t *testing.T) {
	udp4 := ipv4(ProtoUDP, "192.0.2.1", "198.51.100.2", nil, ports(5353, 53, 12))
	tcp4opts := ipv4(ProtoTCP, "192.0.2.1", "198.51.100.2", make([]byte, 8), ports(40000, 443, 20))
	fragLater4 := ipv4(ProtoTCP, "192.0.2.1", "198.51.100.2", nil, []byte{1, 2, 3})
	binary.BigEndian.PutUint16(fragLater4[6:], 0x2000|185) // MF, offset 185*8
	fragFirst4 := ipv4(ProtoUDP, "192.0.2.1", "198.51.100.2", nil, ports(1, 2, 16))
	binary.BigEndian.PutUint16(fragFirst4[6:], 0x2000)
	tinyFrag4 := ipv4(ProtoTCP, "192.0.2.1", "198.51.100.2", nil, ports(1, 2, 8))
	binary.BigEndian.PutUint16(tinyFrag4[6:], 0x2000)
	padded4 := append(ipv4(ProtoICMP, "192.0.2.1", "192.0.2.2", nil, make([]byte, 8)), 0, 0, 0, 0)
	badIHL := ipv4(ProtoUDP, "192.0.2.1", "192.0.2.2", nil, ports(1, 2, 8))
	badIHL[0] = 0x44
	shortTotal := ipv4(ProtoUDP, "192.0.2.1", "192.0.2.2", nil, ports(1, 2, 8))
	binary.BigEndian.PutUint16(shortTotal[2:], 12)

	tcp6 := ipv6(ProtoTCP, "2001:db8::1", "2001:db8::2", ports(1234, 80, 20))
	// hop-by-hop (8 bytes) -> destination options (16 bytes) -> UDP
	ext := append([]byte{60, 0, 0, 0, 0, 0, 0, 0, ProtoUDP, 1}, make([]byte, 14)...)
	ext6 := ipv6(0, "2001:db8::1", "2001:db8::2", append(ext, ports(7, 9, 8)...))
	fragFirst6 := ipv6(44, "2001:db8::1", "2001:db8::2", append([]byte{ProtoUDP, 0, 0, 1, 0, 0, 0, 1}, ports(10, 20, 8)...))
	fragLater6 := ipv6(44, "2001:db8::1", "2001:db8::2", append([]byte{ProtoTCP, 0, 0x05, 0x00, 0, 0, 0, 1}, 1, 2, 3, 4))
	loop6 := ipv6(60, "2001:db8::1", "2001:db8::2", make([]byte, 8*10)) // ten destination-option headers
	for i := range 10 {
		loop6[40+8*i] = 60
	}
	extPastEnd := ipv6(0, "2001:db8::1", "2001:db8::2", []byte{ProtoUDP, 3, 0, 0, 0, 0, 0, 0})

	tests := []struct {
		name    string
		pkt     []byte
		want    Packet
		wantErr error
	}{
		{"udp4", udp4, Packet{Version: 4, Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("198.51.100.2"),
			Protocol: ProtoUDP, HopLimit: 64, HeaderLen: 20, TotalLen: 32, HasPorts: true, SrcPort: 5353, DstPort: 53}, nil},
		{"tcp4 with options", tcp4opts, Packet{Version: 4, Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("198.51.100.2"),
			Protocol: ProtoTCP, HopLimit: 64, HeaderLen: 28, TotalLen: 48, HasPorts: true, SrcPort: 40000, DstPort: 443}, nil},
		{"ipv4 later fragment has no ports", fragLater4, Packet{Version: 4, Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("198.51.100.2"),
			Protocol: ProtoTCP, HopLimit: 64, HeaderLen: 20, TotalLen: 23, Fragment: true}, nil},
		{"ipv4 first fragment has ports", fragFirst4, Packet{Version: 4, Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("198.51.100.2"),
			Protocol: ProtoUDP, HopLimit: 64, HeaderLen: 20, TotalLen: 36, Fragment: true, HasPorts: true, SrcPort: 1, DstPort: 2}, nil},
		{"trailing bytes after total length", padded4, Packet{Version: 4, Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("192.0.2.2"),
			Protocol: ProtoICMP, HopLimit: 64, HeaderLen: 20, TotalLen: 28}, nil},
		{"tcp6", tcp6, Packet{Version: 6, Src: netip.MustParseAddr("2001:db8::1"), Dst: netip.MustParseAddr("2001:db8::2"),
			Protocol: ProtoTCP, HopLimit: 255, HeaderLen: 40, TotalLen: 60, HasPorts: true, SrcPort: 1234, DstPort: 80}, nil},
		{"ipv6 extension headers", ext6, Packet{Version: 6, Src: netip.MustParseAddr("2001:db8::1"), Dst: netip.MustParseAddr("2001:db8::2"),
			Protocol: ProtoUDP, HopLimit: 255, HeaderLen: 64, TotalLen: 72, HasPorts: true, SrcPort: 7, DstPort: 9}, nil},
		{"ipv6 first fragment", fragFirst6, Packet{Version: 6, Src: netip.MustParseAddr("2001:db8::1"), Dst: netip.MustParseAddr("2001:db8::2"),
			Protocol: ProtoUDP, HopLimit: 255, HeaderLen: 48, TotalLen: 56, Fragment: true, HasPorts: true, SrcPort: 10, DstPort: 20}, nil},
		{"ipv6 later fragment", fragLater6, Packet{Version: 6, Src: netip.MustParseAddr("2001:db8::1"), Dst: netip.MustParseAddr("2001:db8::2"),
			Protocol: ProtoTCP, HopLimit: 255, HeaderLen: 48, TotalLen: 52, Fragment: true}, nil},

		{"empty", nil, Packet{}, ErrTruncated},
		{"version 5", []byte{0x50, 0, 0, 20}, Packet{}, ErrVersion},
		{"short ipv4 header", udp4[:19], Packet{}, ErrTruncated},
		{"ipv4 cut before total length", udp4[:31], Packet{}, ErrTruncated},
		{"ipv4 header length 16", badIHL, Packet{}, ErrMalformed},
		{"ipv4 total length below header", shortTotal, Packet{}, ErrMalformed},
		{"tiny first fragment splits tcp header", tinyFrag4, Packet{}, ErrTruncated},
		{"udp header cut", ipv4(ProtoUDP, "192.0.2.1", "192.0.2.2", nil, ports(1, 2, 6)), Packet{}, ErrTruncated},
		{"short ipv6 header", tcp6[:39], Packet{}, ErrTruncated},
		{"ipv6 cut before payload length", tcp6[:59], Packet{}, ErrTruncated},
		{"ipv6 extension header past end", extPastEnd, Packet{}, ErrTruncated},
		{"ipv6 extension header loop", loop6, Packet{}, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.pkt)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Parse error = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got != tt.want {
				t.Errorf("Parse =\n %+v\nwant\n %+v", got, tt.want)
			}
		})
	}
}

func TestParseDoesNotAllocate(t *testing.T) {
	pkt := ipv6(ProtoTCP, "2001:db8::1", "2001:db8::2", ports(1234, 80, 20))
	if n := testing.AllocsPerRun(100, func() { _, _ = Parse(pkt) }); n != 0 {
		t.Errorf("Parse allocates %v times per packet", n)
	}
}

func FuzzParsePacket(f *testing.F) {
	f.Add(ipv4(ProtoUDP, "192.0.2.1", "198.51.100.2", nil, ports(5353, 53, 12)))
	f.Add(ipv4(ProtoTCP, "192.0.2.1", "198.51.100.2", make([]byte, 40), ports(1, 2, 20)))
	f.Add(ipv6(ProtoTCP, "2001:db8::1", "2001:db8::2", ports(1234, 80, 20)))
	f.Add(ipv6(44, "2001:db8::1", "2001:db8::2", append([]byte{ProtoUDP, 0, 0, 1, 0, 0, 0, 1}, ports(10, 20, 8)...)))
	f.Add(ipv6(0, "2001:db8::1", "2001:db8::2", append([]byte{51, 0, 0, 0, 0, 0, 0, 0, ProtoUDP, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, ports(1, 2, 8)...)))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse(b)
		if err != nil {
			if p != (Packet{}) {
				t.Fatalf("error %v with non-zero packet %+v", err, p)
			}
			return
		}
		if !(p.HeaderLen <= p.TotalLen && p.TotalLen <= len(b)) {
			t.Fatalf("header %d, total %d, buffer %d", p.HeaderLen, p.TotalLen, len(b))
		}
		switch p.Version {
		case 4:
			if !p.Src.Is4() || !p.Dst.Is4() || p.HeaderLen < 20 || p.Src != netip.AddrFrom4([4]byte(b[12:16])) {
				t.Fatalf("bad IPv4 result %+v", p)
			}
		case 6:
			if !p.Src.Is6() || !p.Dst.Is6() || p.HeaderLen < 40 || p.Dst != netip.AddrFrom16([16]byte(b[24:40])) {
				t.Fatalf("bad IPv6 result %+v", p)
			}
		default:
			t.Fatalf("version %d accepted", p.Version)
		}
		if p.HasPorts {
			if p.Protocol != ProtoTCP && p.Protocol != ProtoUDP || p.HeaderLen+8 > p.TotalLen {
				t.Fatalf("ports on protocol %d with header %d of %d", p.Protocol, p.HeaderLen, p.TotalLen)
			}
			if p.SrcPort != binary.BigEndian.Uint16(b[p.HeaderLen:]) || p.DstPort != binary.BigEndian.Uint16(b[p.HeaderLen+2:]) {
				t.Fatalf("ports %d>%d do not match the bytes", p.SrcPort, p.DstPort)
			}
		}
	})
}
