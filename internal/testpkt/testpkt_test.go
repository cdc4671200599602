package testpkt

import (
	"net/netip"
	"testing"

	"github.com/nym-go/nym/tun/ippkt"
)

func TestTestPacketsAreValid(t *testing.T) {
	p4 := IPv4(t, netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("192.0.2.1"), ippkt.ProtoTCP, 443, []byte("hi"))
	if Checksum(p4[:20]) != 0 {
		t.Fatal("IPv4 header checksum does not verify")
	}
	pseudo := append(append(append([]byte{}, p4[12:20]...), 0, ippkt.ProtoTCP), 0, byte(len(p4)-20))
	if Checksum(pseudo, p4[20:]) != 0 {
		t.Fatal("TCP checksum does not verify")
	}
	h, err := ippkt.Parse(p4)
	if err != nil || h.TotalLen != len(p4) || h.DstPort != 443 || h.Protocol != ippkt.ProtoTCP {
		t.Fatalf("ippkt.Parse = %+v, %v", h, err)
	}
	p6 := UDP6(t, "fc00::2", "2001:db8::1", 53, "q")
	if h, err := ippkt.Parse(p6); err != nil || h.TotalLen != len(p6) || h.DstPort != 53 || h.Src != netip.MustParseAddr("fc00::2") {
		t.Fatalf("ippkt.Parse = %+v, %v", h, err)
	}
}
