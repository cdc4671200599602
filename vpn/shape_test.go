package vpn

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

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
//
// The whole network runs in this process and needs about 0.6 of a core for
// it. A machine that gives it less slows every clock in it: with 3 CPU hogs
// beside it (load 20) it got 0.15-0.3 of a core, the client's Poisson
// stream fell behind and gave up deadlines (80-140 packets/s in every mode)
// and a download's round trips grew to seconds in the mixes' queues (each
// mix held a packet 0.25-0.8 s beyond its mixing delay). Such a phase
// measures the machine, not the profile: a phase that misses a bound while
// the mixes held packets beyond their delays, on average, more than
// holdNoise (what a mix adds when it gets the CPU it needs) is measured
// again, and when every try is starved the test says so and skips. A client
// that sends the wrong rate on a machine that lets it run still fails (its
// rate does not make the mixes fall behind), and every packet at the gateway
// must be one the client counted as a slot of its own stream.
func TestTimingTrafficShapeAnonymousPlus(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 40 s")
	}
	const (
		phase = 10 * time.Second
		tries = 3 // per phase, when the machine starved the process
		// holdNoise is how long beyond the asked delay a mix holds a
		// packet when the machine lets the process run: its unwrap and
		// its timer's slack (a few hundred µs; 2-3 ms at load 25-30 from
		// other sessions, where every figure was still within bounds).
		holdNoise = 5 * time.Millisecond
	)
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
	check := func(mode string) (starved bool) {
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
					if ctx.Err() == nil {
						t.Errorf("dialing the discard server: %v", err)
					}
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
		st0, fwd0, sent0, slots0, held0 := tn.Stats(), forwarded(), sentDown(), slotsSent(mix), mixHold(t, n)
		start := time.Now()
		time.Sleep(phase)
		st1, fwd1, sent1, slots1, held1 := tn.Stats(), forwarded(), sentDown(), slotsSent(mix), mixHold(t, n)
		secs := time.Since(start).Seconds()
		rate, slots := float64(fwd1-fwd0)/secs, float64(slots1-slots0)/secs
		gw := float64(sent1-sent0) / secs
		down, up := float64(st1.BytesDown-st0.BytesDown)/secs, float64(st1.BytesUp-st0.BytesUp)/secs
		hold := held1.Sub(held0).mean()
		t.Logf("%s: %.1f packets/s at the gateway over %.1f s (%.1f slots/s sent by the client), want %.1f; the gateway sent %.0f kB/s down, want %.0f; tunnel %.0f kB/s down, %.0f kB/s up; the mixes held packets %v beyond their delays",
			mode, rate, secs, slots, want, gw/1e3, wantDown/1e3, down/1e3, up/1e3, hold.Round(10*time.Microsecond))
		t.Logf("%s: SURBs sent %d used %d outstanding %d resets %d backlog %d; bundles down %d; reorder %+v",
			mode, st1.SURBsSent-st0.SURBsSent, st1.SURBsUsed-st0.SURBsUsed, st1.SURBsOutstanding, st1.SURBResets-st0.SURBResets,
			st1.Backlog, st1.BundlesDown-st0.BundlesDown, st1.Reorder.Sub(st0.Reorder))
		var fails []string
		fail := func(format string, args ...any) { fails = append(fails, fmt.Sprintf(mode+": "+format, args...)) }
		if math.Abs(rate-want)/want > 0.10 {
			fail("%.1f packets/s at the gateway, want %.1f ± 10%%", rate, want)
		}
		if math.Abs(gw-wantDown)/wantDown > 0.10 {
			fail("the gateway sent %.0f kB/s down, want the constant %.0f kB/s ± 10%%", gw/1e3, wantDown/1e3)
		}
		// Every packet at the gateway is a slot of the client's stream,
		// busy or idle: nothing goes around it (those in flight at either
		// end of the phase aside: a link that lags carries some over).
		if math.Abs(rate-slots) > 0.05*want {
			fail("%.1f packets/s at the gateway, %.1f slots/s sent by the client", rate, slots)
		}
		// The busy phases must really be busy, or they show nothing.
		if mode == downloading && down < 50e3 || mode == uploading && up < 50e3 {
			fail("only %.0f kB/s down, %.0f kB/s up", down/1e3, up/1e3)
		}
		if len(fails) > 0 && hold > holdNoise {
			t.Logf("%s: the mixes held packets %v beyond their delays: starved, measuring again (%s)", mode, hold.Round(time.Millisecond), strings.Join(fails, "; "))
			return true
		}
		for _, f := range fails {
			t.Error(f)
		}
		return false
	}
	for _, mode := range []string{idle, downloading, uploading} {
		for try := 1; check(mode); try++ {
			if try == tries {
				t.Skipf("%s: the machine starved the process in all %d tries: the rates would measure the machine, not the profile", mode, tries)
			}
		}
	}
}

// mixHeld adds up how long the mixes held packets beyond the delays their
// senders asked for (nym_mixnode_added_latency_seconds): their queues, a
// measure of how far the process falls short of the CPU the network needs.
type mixHeld struct {
	secs    float64
	packets uint64
}

func (h mixHeld) Sub(o mixHeld) mixHeld { return mixHeld{h.secs - o.secs, h.packets - o.packets} }

func (h mixHeld) mean() time.Duration {
	if h.packets == 0 {
		return 0
	}
	return time.Duration(h.secs / float64(h.packets) * float64(time.Second))
}

func mixHold(t *testing.T, n *miniNet) mixHeld {
	t.Helper()
	var h mixHeld
	for _, nd := range n.nodes {
		g, ok := nd.Registerer().(prometheus.Gatherer)
		if !ok {
			t.Fatal("a node's registry gathers nothing")
		}
		mfs, err := g.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "nym_mixnode_added_latency_seconds" {
				for _, m := range mf.GetMetric() {
					h.secs += m.GetHistogram().GetSampleSum()
					h.packets += m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return h
}

// slotsSent is what the client's Poisson stream sent: real packets and
// loop cover, one per slot.
func slotsSent(c *client.Client) uint64 {
	st := c.Stats()
	return st.RealPacketsSent + st.CoverPacketsSent
}
