package router

import (
	"net/netip"
	"testing"

	"github.com/nym-go/nym/internal/testpkt"
	"github.com/nym-go/nym/ipr"
	"github.com/nym-go/nym/tun/ippkt"
)

// discardTUN takes packets and forgets them.
type discardTUN struct{}

func (discardTUN) Write([][]byte) error { return nil }

// BenchmarkRouterUpstream: one session's Data requests, each a bundle of
// two packets, through parsing, the source check and the policy to the
// TUN. Reported per bundle.
func BenchmarkRouterUpstream(b *testing.B) {
	e := newTestExit(b, func(c *Config) {
		c.TUN = discardTUN{}
		c.Policy = func(netip.AddrPort, uint8) (bool, string) { return true, "" }
	})
	c := e.client(1)
	c.send(&ipr.Connect{RequestID: 1, Nonce: c.nonce})
	ok := e.lastResponse(c.key).(*ipr.ConnectOK)
	dst := netip.MustParseAddr("192.0.2.1")
	bundle := bundleOf(b,
		testpkt.IPv4(b, ok.Addrs.V4, dst, ippkt.ProtoUDP, 53, make([]byte, 600)),
		testpkt.IPv4(b, ok.Addrs.V4, dst, ippkt.ProtoTCP, 443, make([]byte, 600)))
	msgs := make([][]byte, b.N)
	for i := range msgs {
		msgs[i], _ = ipr.MarshalRequest(&ipr.DataUp{Seq: uint64(i), Bundle: bundle})
	}
	b.SetBytes(int64(len(bundle)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		e.r.HandleRequest(c.key, msgs[i])
	}
	if s := e.r.Stats(); s.PacketsUp != 2*uint64(b.N) {
		b.Fatalf("%d packets up, want %d", s.PacketsUp, 2*b.N)
	}
}

// BenchmarkRouterDownstream: packets from the TUN, 1000 bytes each, queued
// for one session and pulled two to a bundle into a transport's buffer, as
// a reply stream does with a SURB in hand. Reported per packet.
func BenchmarkRouterDownstream(b *testing.B) {
	e := newTestExit(b, func(c *Config) { c.TUN = discardTUN{} })
	c := e.client(1)
	c.send(&ipr.Connect{RequestID: 1, Nonce: c.nonce})
	ok := e.lastResponse(c.key).(*ipr.ConnectOK)
	pkt := testpkt.IPv4(b, netip.MustParseAddr("192.0.2.1"), ok.Addrs.V4, ippkt.ProtoUDP, 40000, make([]byte, 700))
	batch := [][]byte{pkt, pkt}
	d := e.stream(c.key).d
	buf := make([]byte, 0, testCapacity)
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N / 2 {
		e.r.FromTUN(batch)
		if _, ok := d.Pull(buf); !ok {
			b.Fatal("nothing to pull")
		}
	}
}
