package exit_test

import (
	"context"
	"crypto/rand"
	"net/netip"
	"testing"
	"time"

	"github.com/nym-go/nym/internal/poll"
	"github.com/nym-go/nym/internal/testexit"
	"github.com/nym-go/nym/internal/testnet"
	"github.com/nym-go/nym/ipr"
	"github.com/nym-go/nym/ipr/router"
	"github.com/nym-go/nym/mixnet/client"
)

// Issue 11: the router's mixnet client pulls each session's downstream,
// one bundle per SURB it holds for the session. A session whose client
// stops giving SURBs keeps its packets in its queue, where CoDel can age
// them out (nothing takes a bundle only to wait for a SURB), and the
// client library reports the starvation. When SURBs come again (here: the
// same client under a new sender tag, which moves the session by its
// nonce), the first thing pulled tells the client it ran short, and then
// the queue drains.
func TestStarvedSessionKeepsItsQueue(t *testing.T) {
	n := testnet.Start(t, testnet.Options{})
	server := netip.MustParseAddrPort("192.0.2.1:7")
	lp := client.Loopix{} // no mixing delay: a quick test
	e := testexit.StartOptions(t, n, testexit.Options{Loopix: lp, Internet: []netip.Addr{server.Addr()}})
	to := e.Client.Address()

	// The internet answers a datagram with a burst.
	const burst = 40
	uc, err := e.Internet.ListenUDPAddrPort(server)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { uc.Close() })
	go func() {
		buf := make([]byte, 2048)
		_, from, err := uc.ReadFrom(buf)
		if err != nil {
			return
		}
		for range burst {
			if _, err := uc.WriteTo(make([]byte, 1000), from); err != nil {
				return
			}
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var nonce [ipr.NonceSize]byte
	rand.Read(nonce[:])
	a := testexit.Connect(t, n, client.Config{Loopix: &lp})
	const given = 4 + 1 // SURBs a gives the exit, all told
	send(t, ctx, a, to, &ipr.Connect{RequestID: 1, Nonce: nonce}, 4)
	ok := waitResponse[*ipr.ConnectOK](t, ctx, a)
	src := netip.AddrPortFrom(ok.Addrs.V4, 40000)
	send(t, ctx, a, to, &ipr.DataUp{Seq: 0, Bundle: bundle(t, udp4(src, server, []byte("burst, please")))}, 1)
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	a.Close() // it will never give the exit another SURB

	// The exit spends what SURBs it has, then starves with the rest of
	// the burst still in the session's queue.
	poll.Until(t, 30*time.Second, "the session to starve with the burst queued", func() bool {
		s := e.Router.Stats()
		return s.Starved > 0 && s.PacketsDown+uint64(s.Queued)+s.Drops[router.DropSojourn] == burst
	})
	s := e.Router.Stats()
	if s.Queued == 0 || s.BundlesDown+s.LowSURBInfos > given || s.Drops[router.DropQueueFull] != 0 {
		t.Fatalf("starved: %d packets queued, %d bundles sent on %d SURBs, %d queue-full drops; want packets queued, no more bundles than SURBs",
			s.Queued, s.BundlesDown, given, s.Drops[router.DropQueueFull])
	}

	// The client is back, under a new sender tag, with SURBs.
	b := testexit.Connect(t, n, client.Config{Loopix: &lp})
	before := s.PacketsDown
	send(t, ctx, b, to, &ipr.Connect{RequestID: 2, Nonce: nonce}, 40)
	var got uint64
	sawInfo, sawOK := false, false
	for {
		var m client.Message
		select {
		case m = <-b.Receive():
		case <-ctx.Done():
			t.Fatalf("%d of the queued packets came after the SURBs (stats %+v): %v", got, e.Router.Stats(), ctx.Err())
		}
		resp, err := ipr.ParseResponse(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		switch r := resp.(type) {
		case *ipr.ConnectOK:
			sawOK = r.Addrs == ok.Addrs
		case *ipr.Info:
			if r.Code == ipr.InfoLowSURBs && got == 0 {
				sawInfo = true
			}
		case *ipr.DataDown:
			pkts, _ := ipr.SplitBundle(r.Bundle, nil)
			got += uint64(len(pkts))
		}
		if s := e.Router.Stats(); sawOK && s.Queued == 0 && got == s.PacketsDown-before {
			if s.PacketsDown+s.Drops[router.DropSojourn] != burst {
				t.Fatalf("%d packets sent and %d aged out of a burst of %d", s.PacketsDown, s.Drops[router.DropSojourn], burst)
			}
			break
		}
	}
	if !sawInfo {
		t.Fatal("the client was not told, before its data, that the exit ran short of its SURBs")
	}
}

// bundle packs pkts into one upstream bundle.
func bundle(t *testing.T, pkts ...[]byte) []byte {
	t.Helper()
	enc := ipr.NewBundleEncoder(1500)
	for _, p := range pkts {
		if err := enc.Add(p); err != nil {
			t.Fatal(err)
		}
	}
	return enc.Bytes()
}
