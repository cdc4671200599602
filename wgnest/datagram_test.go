package wgnest

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/nym-go/nym/internal/testpkt"
)

func TestDatagramRoundTrip(t *testing.T) {
	for _, tc := range []struct{ src, dst string }{
		{"198.51.100.2:50000", "192.0.2.40:51820"},
		{"[2001:db8:16::2]:50000", "[2001:db8:1::40]:51820"},
	} {
		d := Datagram{Src: netip.MustParseAddrPort(tc.src), Dst: netip.MustParseAddrPort(tc.dst), Payload: []byte("a WireGuard message, or so")}
		b := make([]byte, 200)
		n, err := d.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		if n != HeaderLen(d.Dst.Addr())+len(d.Payload) {
			t.Fatalf("%s: %d bytes", tc.dst, n)
		}
		got, err := ParseDatagram(b[:n])
		if err != nil {
			t.Fatal(err)
		}
		if got.Src != d.Src || got.Dst != d.Dst || !bytes.Equal(got.Payload, d.Payload) {
			t.Fatalf("round trip: %+v, want %+v", got, d)
		}
		// The checksums are real: what a kernel would compute.
		hl := HeaderLen(d.Dst.Addr())
		if d.Dst.Addr().Is4() && testpkt.Checksum(b[:20]) != 0 {
			t.Fatal("bad IPv4 header checksum")
		}
		pseudo := append(d.Src.Addr().AsSlice(), d.Dst.Addr().AsSlice()...)
		l := n - hl + udpHeaderLen
		pseudo = append(pseudo, 0, 0, byte(l>>8), byte(l), 0, 0, 0, protoUDP)
		if d.Dst.Addr().Is4() {
			pseudo = append(pseudo[:8], 0, protoUDP, byte(l>>8), byte(l))
		}
		if testpkt.Checksum(pseudo, b[hl-udpHeaderLen:n]) != 0 {
			t.Fatalf("%s: bad UDP checksum", tc.dst)
		}
	}
}

func TestDatagramRefusals(t *testing.T) {
	d := Datagram{Src: netip.MustParseAddrPort("198.51.100.2:1"), Dst: netip.MustParseAddrPort("[2001:db8::1]:2")}
	if _, err := d.Marshal(make([]byte, 100)); err == nil {
		t.Fatal("mixed families marshalled")
	}
	d.Dst = netip.MustParseAddrPort("192.0.2.1:2")
	d.Payload = make([]byte, 100)
	if _, err := d.Marshal(make([]byte, 100)); err == nil {
		t.Fatal("marshalled into a short buffer")
	}
	b := make([]byte, 200)
	n, _ := d.Marshal(b)
	b[9] = 6 // TCP
	if _, err := ParseDatagram(b[:n]); err == nil {
		t.Fatal("parsed a TCP packet as UDP")
	}
	b[9] = protoUDP
	b[24], b[25] = 0xff, 0xff // UDP length past the packet
	if _, err := ParseDatagram(b[:n]); err == nil {
		t.Fatal("parsed a UDP length past the packet")
	}
}

func FuzzParseDatagram(f *testing.F) {
	for _, dst := range []string{"192.0.2.1:51820", "[2001:db8::1]:51820"} {
		src := "198.51.100.2:1"
		if dst[0] == '[' {
			src = "[2001:db8:16::2]:1"
		}
		b := make([]byte, 100)
		n, _ := Datagram{Src: netip.MustParseAddrPort(src), Dst: netip.MustParseAddrPort(dst), Payload: []byte("payload")}.Marshal(b)
		f.Add(b[:n])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ParseDatagram(b)
		if err != nil {
			return
		}
		out := make([]byte, HeaderLen(d.Dst.Addr())+len(d.Payload))
		n, err := d.Marshal(out)
		if err != nil {
			t.Fatalf("parsed %+v but cannot marshal it: %v", d, err)
		}
		again, err := ParseDatagram(out[:n])
		if err != nil || again.Src != d.Src || again.Dst != d.Dst || !bytes.Equal(again.Payload, d.Payload) {
			t.Fatalf("round trip of %+v: %+v, %v", d, again, err)
		}
	})
}
