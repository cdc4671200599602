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
// nonce), the client is told it ran short, and the queue drains.
func TestStarvedSessionKeepsItsQueue(t *testing.T) {
	n := testnet.Start(t, testnet.Options{})
	server := netip.MustParseAddrPort("192.0.2.1:7")
	lp := client.Loopix{} // no mixing delay: a quick test
	e := testexit.StartOptions(t, n, testexit.Options{
		Loopix:   lp,
		Internet: []netip.Addr{server.Addr()},
		// The exit never asks for more SURBs (it would ask only when a
		// reply left none, and then it cannot): the client's SURBs are
		// what the test gives, so the starvation is the test's to end.
		SURBs: client.SURBPolicy{LowWater: 1},
	})
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
	cs := e.Client.Stats()
	t.Logf("starved: %d packets queued, %d sent in %d bundles, %d aged out", s.Queued, s.PacketsDown, s.BundlesDown, s.Drops[router.DropSojourn])
	if s.Queued == 0 || s.Drops[router.DropQueueFull] != 0 || cs.SURBsReceived != given || cs.SURBsHeld != 0 ||
		s.RepliesSent+s.BundlesDown+s.LowSURBInfos != given {
		t.Fatalf("starved: %d packets queued, %d queue-full drops, %d SURBs received, %d held, %d replies and %d bundles sent; "+
			"want packets queued, %d SURBs received and all spent on the ConnectOK and bundles",
			s.Queued, s.Drops[router.DropQueueFull], cs.SURBsReceived, cs.SURBsHeld, s.RepliesSent, s.BundlesDown, given)
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
			t.Fatalf("after the SURBs came: %d of the queued packets, ConnectOK %v, Info LowSURBs %v (stats %+v): %v",
				got, sawOK, sawInfo, e.Router.Stats(), ctx.Err())
		}
		resp, err := ipr.ParseResponse(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		switch r := resp.(type) {
		case *ipr.ConnectOK:
			sawOK = r.Addrs == ok.Addrs
		case *ipr.Info:
			// Pulled first (TestStarvedStreamKeepsPacketsQueuedAndAsksForSURBs
			// in ipr/router shows the order); the mixnet may reorder.
			sawInfo = sawInfo || r.Code == ipr.InfoLowSURBs
		case *ipr.DataDown:
			pkts, _ := ipr.SplitBundle(r.Bundle, nil)
			got += uint64(len(pkts))
		}
		if s := e.Router.Stats(); sawOK && sawInfo && s.Queued == 0 && got == s.PacketsDown-before {
			if s.PacketsDown+s.Drops[router.DropSojourn] != burst {
				t.Fatalf("%d packets sent and %d aged out of a burst of %d", s.PacketsDown, s.Drops[router.DropSojourn], burst)
			}
			break
		}
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
