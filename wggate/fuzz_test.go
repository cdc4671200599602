package wggate

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/nym-go/nym/internal/testpkt"
	"github.com/nym-go/nym/tun/ippkt"
)

// FuzzRelayFromClient feeds the entry's relay whatever a client's peer
// could put in the outer tunnel: it must drop or relay, never panic.
func FuzzRelayFromClient(f *testing.F) {
	client, exit := netip.MustParseAddr("10.2.0.2"), netip.MustParseAddrPort("127.0.0.1:9")
	f.Add(testpkt.IPv4(f, client, exit.Addr(), ippkt.ProtoUDP, exit.Port(), []byte("wg")))
	f.Add(testpkt.IPv4(f, client, exit.Addr(), ippkt.ProtoTCP, exit.Port(), []byte("tcp")))
	f.Add(testpkt.IPv6(f, netip.MustParseAddr("fc00::2:2"), netip.MustParseAddr("::1"), ippkt.ProtoUDP, 9, nil))
	m, err := newMetrics(nil, "entry")
	if err != nil {
		f.Fatal(err)
	}
	ctun := newChanTUN(1420, 16, nil)
	owner := func(a netip.Addr) (peerKey, bool) { return peerKey{1}, a == client }
	r := newRelay(context.Background(), ctun, owner, time.Minute, 4, m, testLogger())
	f.Cleanup(r.Close)
	r.SetExits([]netip.AddrPort{exit, netip.MustParseAddrPort("[::1]:9")})
	f.Fuzz(func(t *testing.T, pkt []byte) {
		r.fromClient(pkt)
	})
}
