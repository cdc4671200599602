package ipr

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/nym-go/nym/internal/testpkt"
	"github.com/nym-go/nym/mixnet/sphinx"
	"github.com/nym-go/nym/tun/ippkt"
)

func TestMaxIPPacket(t *testing.T) {
	tests := []struct{ capacity, want int }{
		{sphinx.RegularPayload, sphinx.RegularPayload - DataDownOverhead - LengthPrefixSize},
		{1500, 1500 - 14},
		{14, 0},
		{5, 0},
		{1 << 20, 1<<16 - 1},
	}
	for _, tt := range tests {
		if got := MaxIPPacket(tt.capacity); got != tt.want {
			t.Errorf("MaxIPPacket(%d) = %d, want %d", tt.capacity, got, tt.want)
		}
	}
	// The promise behind the number: a packet of exactly MaxIPPacket bytes
	// makes a Data message of exactly the capacity, in both directions.
	const capacity = 1600
	pkt := make([]byte, MaxIPPacket(capacity))
	enc := NewBundleEncoder(capacity - DataDownOverhead)
	if err := enc.Add(pkt); err != nil {
		t.Fatal(err)
	}
	down, _ := MarshalResponse(&DataDown{Bundle: enc.Bytes()})
	up, _ := MarshalRequest(&DataUp{Bundle: enc.Bytes()})
	if len(down) != capacity || len(up) > capacity {
		t.Fatalf("full-MTU packet makes messages of %d and %d bytes, capacity %d", len(down), len(up), capacity)
	}
}

func TestBundleEncoderFillsAndRefuses(t *testing.T) {
	src, dst := "10.0.0.2", "192.0.2.1"
	p := udp4(t, src, dst, 53, strings.Repeat("a", 100-28)) // 100 bytes
	enc := NewBundleEncoder(3*(LengthPrefixSize+100) + 50)
	for i := range 3 {
		if err := enc.Add(p); err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
	}
	if err := enc.Add(p); !errors.Is(err, ErrBundleFull) {
		t.Fatalf("fourth packet: %v, want ErrBundleFull", err)
	}
	small := udp4(t, src, dst, 53, strings.Repeat("b", 20))
	if err := enc.Add(small); err != nil { // 48+2 bytes still fit exactly
		t.Fatalf("small packet: %v", err)
	}
	if enc.Len() != 3*102+50 || enc.Packets() != 4 {
		t.Fatalf("len %d packets %d", enc.Len(), enc.Packets())
	}
	got, bad := SplitBundle(enc.Bytes(), nil)
	if bad != 0 || len(got) != 4 || !bytes.Equal(got[3], small) || !bytes.Equal(got[0], p) {
		t.Fatalf("split: %d packets, %d malformed", len(got), bad)
	}

	huge := NewBundleEncoder(50)
	if err := huge.Add(p); !errors.Is(err, ErrPacketTooBig) {
		t.Fatalf("packet larger than the capacity: %v, want ErrPacketTooBig", err)
	}
	if err := huge.Add(nil); err == nil || errors.Is(err, ErrBundleFull) {
		t.Fatalf("empty packet: %v", err)
	}
}

func TestBundleEncoderKeepsPrefix(t *testing.T) {
	enc := NewBundleEncoder(200)
	enc.Reset([]byte("HEAD"))
	p := udp6(t, "fc00::2", "2001:db8::1", 53, "x")
	if err := enc.Add(p); err != nil {
		t.Fatal(err)
	}
	b := enc.Bytes()
	if string(b[:4]) != "HEAD" || enc.Len() != LengthPrefixSize+len(p) {
		t.Fatalf("bundle % x", b[:8])
	}
}

func TestSplitBundle(t *testing.T) {
	good4 := udp4(t, "10.0.0.2", "192.0.2.1", 53, "hello")
	good6 := udp6(t, "fc00::2", "2001:db8::1", 443, "world")
	badTotal := append([]byte(nil), good4...)
	binary.BigEndian.PutUint16(badTotal[2:], uint16(len(good4)+1)) // IPv4 says one byte more
	badVersion := append([]byte(nil), good4...)
	badVersion[0] = 0x55
	badIHL := append([]byte(nil), good4...)
	badIHL[0] = 0x44
	badPayload6 := append([]byte(nil), good6...)
	binary.BigEndian.PutUint16(badPayload6[4:], 0)
	entry := func(p []byte) []byte {
		return append(binary.BigEndian.AppendUint16(nil, uint16(len(p))), p...)
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

	tests := []struct {
		name      string
		bundle    []byte
		want      [][]byte
		malformed int
	}{
		{"empty", nil, nil, 0},
		{"one", entry(good4), [][]byte{good4}, 0},
		{"two families", cat(entry(good4), entry(good6)), [][]byte{good4, good6}, 0},
		{"zero padding ends it", cat(entry(good4), make([]byte, 30)), [][]byte{good4}, 0},
		{"zero length then junk", cat(entry(good4), []byte{0, 0, 0xff, 0xff}), [][]byte{good4}, 0},
		{"lone prefix byte", cat(entry(good4), []byte{7}), [][]byte{good4}, 1},
		{"length past the end", cat(entry(good6), []byte{0x05, 0xdc, 0x45, 0}), [][]byte{good6}, 1},
		{"length one short", cat(entry(good4)[:len(entry(good4))-1]), nil, 1},
		{"short IP packet", cat(entry([]byte{0x45, 0, 0}), entry(good6)), [][]byte{good6}, 1},
		{"IPv4 total length mismatch", cat(entry(badTotal), entry(good4)), [][]byte{good4}, 1},
		{"bad version", cat(entry(badVersion), entry(good6)), [][]byte{good6}, 1},
		{"bad IHL", cat(entry(badIHL), entry(good6)), [][]byte{good6}, 1},
		{"IPv6 jumbo/zero payload", cat(entry(badPayload6), entry(good4)), [][]byte{good4}, 1},
		{"packet with trailing byte", cat(entry(append(append([]byte(nil), good4...), 0))), nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, bad := SplitBundle(tt.bundle, nil)
			if bad != tt.malformed {
				t.Errorf("malformed = %d, want %d", bad, tt.malformed)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("%d packets, want %d", len(got), len(tt.want))
			}
			for i := range got {
				if !bytes.Equal(got[i], tt.want[i]) {
					t.Errorf("packet %d differs", i)
				}
			}
		})
	}
}

func TestParseIPPorts(t *testing.T) {
	src4, dst4 := netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("192.0.2.9")
	tcp := testpkt.IPv4(t, src4, dst4, ippkt.ProtoTCP, 8443, nil)
	icmp := testpkt.IPv4(t, src4, dst4, 1, 0, []byte("ping"))
	frag := append([]byte(nil), tcp...)
	binary.BigEndian.PutUint16(frag[6:], 185) // a later fragment: its "port" is payload
	src6, dst6 := netip.MustParseAddr("fc00::2"), netip.MustParseAddr("2001:db8::9")
	udp := testpkt.IPv6(t, src6, dst6, ippkt.ProtoUDP, 53, []byte("q"))
	// The same UDP datagram behind a hop-by-hop and a fragment header.
	ext := make([]byte, 0, len(udp)+16)
	ext = append(ext, udp[:40]...)
	ext[6] = protoHopByHop
	ext = append(ext, protoFragment, 0, 1, 4, 0, 0, 0, 0)  // hop-by-hop: PadN
	ext = append(ext, ippkt.ProtoUDP, 0, 0, 0, 0, 0, 0, 1) // fragment: offset 0
	ext = append(ext, udp[40:]...)
	binary.BigEndian.PutUint16(ext[4:], uint16(len(ext)-40))
	laterFrag := append([]byte(nil), ext...)
	laterFrag[48+2] = 0x01 // fragment offset 32 bytes

	tests := []struct {
		name  string
		pkt   []byte
		proto uint8
		port  uint16
	}{
		{"tcp", tcp, ippkt.ProtoTCP, 8443},
		{"icmp", icmp, 1, 0},
		{"ipv4 later fragment", frag, ippkt.ProtoTCP, 0},
		{"udp6", udp, ippkt.ProtoUDP, 53},
		{"udp6 behind extension headers", ext, ippkt.ProtoUDP, 53},
		{"ipv6 later fragment", laterFrag, ippkt.ProtoUDP, 0},
	}
	for _, tt := range tests {
		h, err := parseIP(tt.pkt)
		if err != nil || h.Proto != tt.proto || h.DstPort != tt.port {
			t.Errorf("%s: parseIP = %+v, %v; want proto %d port %d", tt.name, h, err, tt.proto, tt.port)
		}
	}
	// An extension header that claims to run past the packet.
	bad := append([]byte(nil), ext...)
	bad[41] = 200
	if _, err := parseIP(bad); err == nil {
		t.Error("overlong extension header parsed")
	}
}

// IPv6 extension header numbers the tests build packets with.
const (
	protoHopByHop = 0
	protoFragment = 44
)
