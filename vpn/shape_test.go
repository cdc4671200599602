package vpn

import (
	"context"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/nym-go/nym/ipr/exit"
	"github.com/nym-go/nym/mixnet/client"
	"github.com/nym-go/nym/mixnet/directory"
)

// serveDiscard accepts TCP connections on the exit's internet at port and
// reads them to the end: the far side of an upload.
func serveDiscard(t *testing.T, e *testExit, port uint16) {
	t.Helper()
	ln, err := e.net.ListenTCPAddrPort(netip.AddrPortFrom(internetAddr, port))
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() { io.Copy(io.Discard, c) })
		}
	})
	// The tunnel may be gone before the client's FIN arrives: close the
	// connections here rather than wait for it.
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
}

// The anonymous-plus profile shows its gateway λ + cover packets/s whether
// the tunnel is idle, downloading or uploading: its higher rate must not
// leak activity any more than Nym's default does (TestTrafficShape, for the
// mixnet client alone). Counted at the gateway, over wall-clock phases, so
// a timing test (make test runs it without -race, with one retry).
func TestTimingTrafficShapeAnonymousPlus(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 40 s")
	}
	const phase = 10 * time.Second
	p := AnonymousPlusProfile()
	want := p.Loopix.PacketsPerSecond()

	n := startMiniNet(t, [32]byte{})
	e := startExit(t, n, exit.ServiceLoopix())
	page := randomPage(4 << 20)
	serveInternet(t, e, page)
	serveDiscard(t, e, 9)
	tn, hc := vpnSide(t, n, e, p, nil)
	mix := tn.mix.(*client.Client)

	var forwarded, sentDown func() uint64
	for _, nd := range n.nodes {
		if directory.Key(nd.Identity()) == mix.Address().Gateway {
			gw := nd.Gateway()
			forwarded = func() uint64 {
				st, _ := gw.Client(mix.Address().Identity)
				return st.Forwarded
			}
			sentDown = func() uint64 {
				st, _ := gw.Client(mix.Address().Identity)
				return st.BytesOut
			}
		}
	}
	// And its gateway sends it the same bytes/s whatever it does: the
	// shaped downstream (issue 18).
	wantDown := p.Loopix.DownstreamBytesPerSecond()
	if forwarded == nil {
		t.Fatal("the client's gateway is not in the test network")
	}

	const idle, downloading, uploading = "idle", "downloading", "uploading"
	check := func(mode string) {
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		defer func() { cancel(); wg.Wait() }()
		switch mode {
		case downloading:
			wg.Go(func() {
				for ctx.Err() == nil {
					req, _ := http.NewRequestWithContext(ctx, "GET", "http://192.0.2.1/", nil)
					if resp, err := hc.Do(req); err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
				}
			})
		case uploading:
			dial := hc.Transport.(*http.Transport).DialContext
			wg.Go(func() {
				c, err := dial(ctx, "tcp", net.JoinHostPort(internetAddr.String(), "9"))
				if err != nil {
					t.Errorf("dialing the discard server: %v", err)
					return
				}
				context.AfterFunc(ctx, func() { c.Close() })
				buf := randomPage(64 << 10)
				for ctx.Err() == nil {
					if _, err := c.Write(buf); err != nil {
						return
					}
				}
			})
		}
		st0, fwd0, sent0, start := tn.Stats(), forwarded(), sentDown(), time.Now()
		time.Sleep(phase)
		st1, fwd1, sent1, secs := tn.Stats(), forwarded(), sentDown(), time.Since(start).Seconds()
		rate := float64(fwd1-fwd0) / secs
		if gw := float64(sent1-sent0) / secs; math.Abs(gw-wantDown)/wantDown > 0.10 {
			t.Errorf("%s: the gateway sent %.0f kB/s down, want the constant %.0f kB/s ± 10%%", mode, gw/1e3, wantDown/1e3)
		} else {
			t.Logf("%s: the gateway sent %.0f kB/s down (constant: %.0f kB/s)", mode, gw/1e3, wantDown/1e3)
		}
		down, up := float64(st1.BytesDown-st0.BytesDown)/secs, float64(st1.BytesUp-st0.BytesUp)/secs
		t.Logf("%s: %.1f packets/s at the gateway over %.1f s, want %.1f; tunnel %.0f kB/s down, %.0f kB/s up",
			mode, rate, secs, want, down/1e3, up/1e3)
		t.Logf("%s: SURBs sent %d used %d outstanding %d resets %d backlog %d; bundles down %d; reorder %+v",
			mode, st1.SURBsSent-st0.SURBsSent, st1.SURBsUsed-st0.SURBsUsed, st1.SURBsOutstanding, st1.SURBResets-st0.SURBResets,
			st1.Backlog, st1.BundlesDown-st0.BundlesDown, st1.Reorder)
		if math.Abs(rate-want)/want > 0.10 {
			t.Errorf("%s: %.1f packets/s at the gateway, want %.1f ± 10%%", mode, rate, want)
		}
		// The busy phases must really be busy, or they show nothing.
		if mode == downloading && down < 50e3 || mode == uploading && up < 50e3 {
			t.Errorf("%s: only %.0f kB/s down, %.0f kB/s up", mode, down/1e3, up/1e3)
		}
	}
	check(idle)
	check(downloading)
	check(uploading)
}
