package wggate

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/nym-go/nym/internal/testpkt"
	"github.com/nym-go/nym/tun/ippkt"
)

// TestRelayForwardsOnlyUDPToExits drives the entry's relay with the packets
// a client's peer could send inside the outer tunnel, with a real UDP
// socket as the exit.
func TestRelayForwardsOnlyUDPToExits(t *testing.T) {
	exit, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer exit.Close()
	exitEP := exit.LocalAddr().(*net.UDPAddr).AddrPort()
	client := netip.MustParseAddr("10.2.0.2")
	m, err := newMetrics(nil, "entry")
	if err != nil {
		t.Fatal(err)
	}
	ctun := newChanTUN(1420, 16, nil)
	owner := func(a netip.Addr) (peerKey, bool) { return peerKey{1}, a == client }
	r := newRelay(context.Background(), ctun, owner, time.Minute, 2, m, testLogger())
	defer r.Close()
	r.SetExits([]netip.AddrPort{exitEP})

	lo := netip.MustParseAddr("127.0.0.1")
	r.fromClient(testpkt.IPv4(t, client, lo, ippkt.ProtoTCP, exitEP.Port(), []byte("tcp")))
	r.fromClient(testpkt.IPv4(t, client, lo, ippkt.ProtoICMP, 0, []byte("ping")))
	r.fromClient(testpkt.IPv4(t, client, lo, ippkt.ProtoUDP, exitEP.Port()+1, []byte("other port")))
	r.fromClient(testpkt.IPv4(t, client, netip.MustParseAddr("127.0.0.2"), ippkt.ProtoUDP, exitEP.Port(), []byte("other host")))
	r.fromClient(testpkt.IPv4(t, netip.MustParseAddr("10.2.0.99"), lo, ippkt.ProtoUDP, exitEP.Port(), []byte("nobody's")))
	r.fromClient([]byte{0x45, 0, 0})
	r.fromClient(testpkt.IPv4(t, client, lo, ippkt.ProtoUDP, exitEP.Port(), []byte("to the exit")))

	exit.SetReadDeadline(time.Now().Add(20 * time.Second))
	buf := make([]byte, 2048)
	n, from, err := exit.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatal(err)
	}
	if string(buf[:n]) != "to the exit" {
		t.Fatalf("exit got %q", buf[:n])
	}
	for reason, want := range map[string]float64{dropNotUDP: 2, dropNotExit: 2, dropNoPeer: 1, dropMalformed: 1} {
		if got := counterValue(m.dropped.WithLabelValues(reason)); got != want {
			t.Errorf("dropped %s: %v, want %v", reason, got, want)
		}
	}

	// The exit's answer comes back as IP/UDP from its endpoint to the
	// client's flow.
	if _, err := exit.WriteToUDPAddrPort([]byte("answer"), from); err != nil {
		t.Fatal(err)
	}
	var pkt *[]byte
	select {
	case pkts := <-ctun.in:
		if len(pkts) != 1 {
			t.Fatalf("%d packets injected, want 1", len(pkts))
		}
		pkt = pkts[0]
	case <-time.After(20 * time.Second):
		t.Fatal("no answer injected")
	}
	p, err := ippkt.Parse(*pkt)
	if err != nil {
		t.Fatal(err)
	}
	if p.Src != exitEP.Addr() || p.SrcPort != exitEP.Port() || p.Dst != client || p.DstPort != 40000 || p.Protocol != ippkt.ProtoUDP {
		t.Fatalf("answer %+v", p)
	}
	if !bytes.Equal((*pkt)[p.HeaderLen+8:], []byte("answer")) {
		t.Fatalf("answer payload %q", (*pkt)[p.HeaderLen+8:])
	}
	if testpkt.Checksum((*pkt)[:20]) != 0 {
		t.Fatal("bad IPv4 header checksum")
	}

	// Flows per client are bounded; closing a peer frees them.
	r.SetExits([]netip.AddrPort{exitEP, netip.MustParseAddrPort("127.0.0.1:9"), netip.MustParseAddrPort("127.0.0.1:10")})
	r.fromClient(testpkt.IPv4(t, client, lo, ippkt.ProtoUDP, 9, []byte("second flow")))
	r.fromClient(testpkt.IPv4(t, client, lo, ippkt.ProtoUDP, 10, []byte("third flow")))
	if got := counterValue(m.dropped.WithLabelValues(dropFlowLimit)); got != 1 {
		t.Fatalf("flow limit drops %v, want 1", got)
	}
	r.closePeer(peerKey{1})
	if got := counterValue(m.flows); got != 0 {
		t.Fatalf("%v flows after the peer closed", got)
	}
}

// TestAppendUDPv6 checks the IPv6 replies the entry builds.
func TestAppendUDPv6(t *testing.T) {
	src, dst := netip.MustParseAddrPort("[2001:db8::1]:51820"), netip.MustParseAddrPort("[fc00::2:2]:40000")
	pkt := appendUDP(nil, src, dst, []byte("hello"))
	p, err := ippkt.Parse(pkt)
	if err != nil {
		t.Fatal(err)
	}
	if p.Src != src.Addr() || p.Dst != dst.Addr() || p.SrcPort != 51820 || p.DstPort != 40000 || p.TotalLen != len(pkt) {
		t.Fatalf("%+v", p)
	}
	want := testpkt.IPv6(t, src.Addr(), dst.Addr(), ippkt.ProtoUDP, 40000, []byte("hello"))
	// testpkt uses source port 40000; compare the checksums by rebuilding ours
	// with the same ports.
	ours := appendUDP(nil, netip.AddrPortFrom(src.Addr(), 40000), dst, []byte("hello"))
	if !bytes.Equal(ours, want) {
		t.Fatalf("IPv6/UDP differs from testpkt's:\n%x\n%x", ours, want)
	}
}

// BenchmarkRelayToExit is the entry's per-packet work towards an exit:
// filter, flow lookup, one UDP send (the exit drains on loopback).
func BenchmarkRelayToExit(b *testing.B) {
	exit, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer exit.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, err := exit.Read(buf); err != nil {
				return
			}
		}
	}()
	exitEP := exit.LocalAddr().(*net.UDPAddr).AddrPort()
	client := netip.MustParseAddr("10.2.0.2")
	m, _ := newMetrics(nil, "entry")
	r := newRelay(context.Background(), newChanTUN(1420, 16, nil), func(netip.Addr) (peerKey, bool) { return peerKey{1}, true }, time.Minute, 4, m, testLogger())
	defer r.Close()
	r.SetExits([]netip.AddrPort{exitEP})
	pkt := testpkt.IPv4(b, client, exitEP.Addr(), ippkt.ProtoUDP, exitEP.Port(), make([]byte, 1372))
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	for b.Loop() {
		r.fromClient(pkt)
	}
}
