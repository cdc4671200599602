package router

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	gcsum "gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/nym-go/nym/internal/testpkt"
	"github.com/nym-go/nym/ipr"
	"github.com/nym-go/nym/tun/icmperr"
	"github.com/nym-go/nym/tun/ippkt"
)

// A packet from the internet too big for a bundle is dropped and answered
// on the TUN with ICMP "too big" carrying the largest packet a bundle holds,
// so the sender's path MTU discovery works through the tunnel.
func TestRouterAnswersTooBigFromTUN(t *testing.T) {
	e := newTestExit(t, nil)
	c := e.client(1)
	c.mustConnect()
	internet4, internet6 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
	mtu := e.r.bundleCap - ipr.LengthPrefixSize
	big := bytes.Repeat([]byte{0xab}, mtu) // plus headers: over the limit
	big4 := testpkt.IPv4(t, internet4, c.addrs.V4, ippkt.ProtoTCP, 40000, big)
	big6 := testpkt.IPv6(t, internet6, c.addrs.V6, ippkt.ProtoTCP, 40000, big)
	noDF := bytes.Clone(big4)
	noDF[6] &^= 0x40
	binary.BigEndian.PutUint16(noDF[10:], 0)
	binary.BigEndian.PutUint16(noDF[10:], testpkt.Checksum(noDF[:20]))
	fits := testpkt.IPv4(t, internet4, c.addrs.V4, ippkt.ProtoTCP, 40000, big[:mtu-40])

	e.r.FromTUN([][]byte{big4, big6, noDF, fits})

	// Only the packet that fits reaches the client.
	var down [][]byte
	for _, b := range c.pull() {
		pkts, _ := ipr.SplitBundle(b.Bundle, nil)
		down = append(down, pkts...)
	}
	samePackets(t, down, [][]byte{fits})

	errs := e.tun.take()
	if len(errs) != 2 {
		t.Fatalf("%d packets on the TUN, want the 2 errors for the DF packets", len(errs))
	}
	// IPv4: fragmentation needed, from the client's address (the exit's
	// kernel drops a packet from its own TUN address as a martian).
	ip4 := header.IPv4(errs[0])
	if !ip4.IsValid(len(errs[0])) || !ip4.IsChecksumValid() || ip4.TransportProtocol() != header.ICMPv4ProtocolNumber ||
		ip4.SourceAddress() != tcpip.AddrFrom4(c.addrs.V4.As4()) || ip4.DestinationAddress() != tcpip.AddrFrom4(internet4.As4()) {
		t.Fatalf("bad IPv4 error header % x", errs[0][:20])
	}
	icmp4 := header.ICMPv4(ip4.Payload())
	if icmp4.Type() != header.ICMPv4DstUnreachable || icmp4.Code() != header.ICMPv4FragmentationNeeded ||
		int(icmp4.MTU()) != mtu || gcsum.Checksum(icmp4, 0) != 0xffff || !bytes.Equal(icmp4.Payload(), big4[:28]) {
		t.Fatalf("ICMP type %d code %d MTU %d (want %d), quote % x", icmp4.Type(), icmp4.Code(), icmp4.MTU(), mtu, icmp4.Payload())
	}
	// IPv6: Packet Too Big, quoting what fits in 1280 bytes.
	ip6 := header.IPv6(errs[1])
	if !ip6.IsValid(len(errs[1])) || len(errs[1]) != icmperr.MinIPv6MTU || ip6.TransportProtocol() != header.ICMPv6ProtocolNumber ||
		ip6.SourceAddress() != tcpip.AddrFrom16(c.addrs.V6.As16()) || ip6.DestinationAddress() != tcpip.AddrFrom16(internet6.As16()) {
		t.Fatalf("bad IPv6 error header % x", errs[1][:40])
	}
	icmp6 := header.ICMPv6(ip6.Payload())
	want := header.ICMPv6Checksum(header.ICMPv6ChecksumParams{
		Header: icmp6[:header.ICMPv6MinimumSize], Src: ip6.SourceAddress(), Dst: ip6.DestinationAddress(),
		PayloadCsum: gcsum.Checksum(icmp6.Payload(), 0), PayloadLen: len(icmp6.Payload()),
	})
	if icmp6.Type() != header.ICMPv6PacketTooBig || int(icmp6.MTU()) != mtu || icmp6.Checksum() != want ||
		!bytes.Equal(icmp6.Payload(), big6[:len(icmp6.Payload())]) {
		t.Fatalf("ICMPv6 type %d MTU %d (want %d), checksum %#x (want %#x)", icmp6.Type(), icmp6.MTU(), mtu, icmp6.Checksum(), want)
	}

	s := e.r.Stats()
	if s.Drops[DropTooBig] != 3 || s.ICMPTooBigSent != 2 || s.PacketsDown != 1 {
		t.Fatalf("stats: %d too big, %d errors sent, %d down", s.Drops[DropTooBig], s.ICMPTooBigSent, s.PacketsDown)
	}

	// A flood of big packets gets a burst of errors, not one per packet;
	// every packet is still counted.
	flood := make([][]byte, 1000)
	for i := range flood {
		flood[i] = big4
	}
	e.r.FromTUN(flood)
	sent := len(e.tun.take())
	if s := e.r.Stats(); sent == 0 || sent > icmperr.DefaultBurst || s.ICMPTooBigSent != 2+uint64(sent) || s.Drops[DropTooBig] != 1003 {
		t.Fatalf("flood of 1000: %d errors written, stats %d sent, %d too big", sent, s.ICMPTooBigSent, s.Drops[DropTooBig])
	}
}
