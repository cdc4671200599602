package vpn

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nym-go/nym/anonymity"
	"github.com/nym-go/nym/internal/poll"
	"github.com/nym-go/nym/internal/testexit"
	"github.com/nym-go/nym/internal/testnet"
	"github.com/nym-go/nym/mixnet/client"
	"github.com/nym-go/nym/mixnet/link"
	"github.com/nym-go/nym/mixnet/node"
	"github.com/nym-go/nym/tun"
)

// readTrace reads one trace file whole.
func readTrace(t *testing.T, path string) []anonymity.Record {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := anonymity.ReadTrace(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return recs
}

// TestTracesConsistent runs two VPN tunnels, each fetching a page from its
// own port on the exit's internet, over an in-process network whose nodes
// all record traces (trace_file), and whose mixnet clients record their
// own with the ground truth of cover. Once everything has stopped, the
// merged trace must be causally consistent (anonymity.Check), name every
// party as the other files do (anonymity.IDOf), and feed the analyses.
func TestTracesConsistent(t *testing.T) {
	if testing.Short() {
		t.Skip("two tunnels over a network")
	}
	dir := t.TempDir()
	router, err := link.GenerateKeyPair(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// Fast mixing, but with loop cover, so the clients' traces hold both
	// real and cover frames.
	p := NoDelayProfile()
	p.Loopix.CoverInterval = client.NymDefaults().CoverInterval
	const tunnels = 2
	recorders := make([]*anonymity.Recorder, tunnels)
	for i := range recorders {
		if recorders[i], err = anonymity.OpenRecorder(filepath.Join(dir, fmt.Sprintf("client%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	var nodes []*testnet.Node
	var ids [tunnels]anonymity.NodeID
	// Registered first, so it runs last: after the tunnels, the exit and
	// the nodes have stopped and closed their files.
	t.Cleanup(func() {
		var all []anonymity.Record
		for i, r := range recorders {
			if err := r.Close(); err != nil {
				t.Error(err)
			}
			all = append(all, readTrace(t, filepath.Join(dir, fmt.Sprintf("client%d", i)))...)
		}
		for _, nd := range nodes {
			all = append(all, readTrace(t, nd.Config.TracePath())...)
		}
		checkTunnelTraces(t, all, ids, anonymity.IDOf(router.Public[:]))
	})

	n := &miniNet{Net: testnet.Start(t, testnet.Options{
		RouterKey: &router.Public,
		EditNode:  func(c *node.Config) { c.TraceFile = "trace" },
	})}
	n.Exit, nodes = n.Net.Exit(), n.Net.Nodes()
	ex := testexit.Start(t, n.Net, &router, p.Loopix, internetAddr)
	e := &testExit{mix: ex.Client, router: ex.Router, net: ex.Internet}

	page := randomPage(8 << 10)
	var wg sync.WaitGroup
	for i := range tunnels {
		servePort(t, e, uint16(8000+i), page)
		rec := recorders[i]
		tn, mix, stack := tracedTunnel(t, n, e, p, rec)
		key := mix.Identity().Public
		ids[i] = anonymity.IDOf(key[:])
		wg.Go(func() {
			// As in fetch: either end's packets are progress, and the
			// stall grows with the load (this test took 156 s at load 25).
			ctx, cancel := poll.WithProgress(context.Background(), testnet.LoadScaled(60*time.Second), func() uint64 {
				s, r := tn.Stats(), e.router.Stats()
				return s.PacketsDown + s.PacketsUp + r.PacketsDown + r.PacketsUp
			})
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("http://%s:%d/", internetAddr, 8000+i), nil)
			hc := &http.Client{Transport: &http.Transport{DialContext: stack.DialContext, DisableKeepAlives: true}}
			resp, err := hc.Do(req)
			if err != nil {
				t.Errorf("tunnel %d: GET: %v", i, err)
				return
			}
			defer resp.Body.Close()
			if b, err := io.ReadAll(resp.Body); err != nil || len(b) != len(page) {
				t.Errorf("tunnel %d: %d bytes, %v", i, len(b), err)
			}
		})
	}
	wg.Wait()
}

// tracedTunnel connects a tunnel with profile p whose mixnet client
// records into rec, runs it over a userspace stack and returns the tunnel,
// its first mixnet client and the stack.
func tracedTunnel(t *testing.T, n *miniNet, e *testExit, p Profile, rec *anonymity.Recorder) (*Tunnel, *client.Client, *tun.Net) {
	t.Helper()
	var first atomic.Pointer[client.Client]
	cfg := Config{
		Profile: p,
		Logger:  quietLogger(),
		Dial: func(ctx context.Context, attempt int) (Mixnet, client.Address, error) {
			m, err := testexit.Dial(ctx, n.Net, client.Config{Loopix: &p.Loopix, Gateway: directory0(n), Logger: quietLogger(), Trace: rec})
			if err != nil {
				return nil, client.Address{}, err
			}
			first.CompareAndSwap(nil, m)
			return m, e.mix.Address(), nil
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tn, err := Connect(ctx, cfg)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	stack := runOverNetstack(t, tn)
	return tn, first.Load(), stack
}

// checkTunnelTraces checks the merged trace of TestTracesConsistent.
func checkTunnelTraces(t *testing.T, all []anonymity.Record, clients [2]anonymity.NodeID, exit anonymity.NodeID) {
	t.Helper()
	rep, err := anonymity.Check(all)
	if err != nil {
		t.Fatalf("inconsistent trace: %v", err)
	}
	t.Logf("%d records; checked %+v", len(all), rep)

	// Every tunnel's client at its gateway, upstream and downstream; the
	// exit's router client named RoleExit at its own; each flow at the
	// exit's internet side, both ways, under its endpoint.
	type seen struct{ up, down, cover, real int }
	atGateway := make(map[anonymity.NodeID]*seen)
	exitPeerRole := anonymity.Role(0)
	flows := make(map[anonymity.NodeID]*seen)
	joined := anonymity.JoinCover(all)
	for _, r := range joined {
		switch {
		case r.Role == anonymity.RoleGateway && (r.PeerRole == anonymity.RoleClient || r.PeerRole == anonymity.RoleExit):
			if r.Peer == exit {
				exitPeerRole = r.PeerRole
			}
			s := atGateway[r.Peer]
			if s == nil {
				s = &seen{}
				atGateway[r.Peer] = s
			}
			if r.Dir == anonymity.In {
				s.up++
				if r.Truth.Cover {
					s.cover++
				} else {
					s.real++
				}
			} else {
				s.down++
			}
		case r.Role == anonymity.RoleExit:
			if r.Node != exit || r.PeerRole != anonymity.RoleHost {
				t.Errorf("exit record %+v: want node %#x, peer role host", r, exit)
			}
			s := flows[r.Peer]
			if s == nil {
				s = &seen{}
				flows[r.Peer] = s
			}
			if r.Dir == anonymity.Out {
				s.up++
			} else {
				s.down++
			}
		}
	}
	for i, c := range clients {
		s := atGateway[c]
		if s == nil || s.up == 0 || s.down == 0 || s.cover == 0 || s.real == 0 {
			t.Errorf("tunnel %d's client %#x at its gateway: %+v, want frames both ways, cover and real upstream", i, c, s)
		}
		f := flows[anonymity.EndpointID(netip.AddrPortFrom(internetAddr, uint16(8000+i)))]
		if f == nil || f.up == 0 || f.down == 0 {
			t.Errorf("tunnel %d's flow at the exit: %+v, want packets both ways", i, f)
		}
	}
	if exitPeerRole != anonymity.RoleExit {
		t.Errorf("the exit's router client is named with role %d at its gateway, want RoleExit", exitPeerRole)
	}

	// The analyses run on it: the senders are the two clients, the exit
	// (replies) and the directory's loop monitor, if it came by; packets
	// leave the last layer with an entropy, and every flow gets a guess.
	ev := anonymity.Events(all)
	ent := anonymity.SenderEntropy(ev)
	if ent.Senders < 3 || len(ent.Bits) == 0 {
		t.Errorf("sender entropy over %d senders, %d packets; want at least 3 senders", ent.Senders, len(ent.Bits))
	}
	corr, err := anonymity.CorrelateFlows(ev, anonymity.Upstream, anonymity.CorrelationConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if corr.Clients < 2 || len(corr.Matches) < 2 {
		t.Errorf("correlation: %d candidates, %d flows; want the 2 clients and both flows", corr.Clients, len(corr.Matches))
	}
	t.Logf("entropy mean %.2f bits (ideal %.2f) over %d packets; upstream matches %+v", ent.Mean, ent.Ideal, len(ent.Bits), corr.Matches)
}
