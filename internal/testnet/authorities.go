package testnet

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/nym-go/nym/mixnet/authority"
	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/ticket"
)

// DefaultNetworkEpoch is the epoch of a test network of several
// authorities: the consensus of an epoch is voted in the window before it,
// so the nodes enter the topology one epoch after they register; 4 s (with
// a 2 s vote window) leaves room for a busy machine and keeps a test short.
const DefaultNetworkEpoch = 4 * time.Second

// networkEpoch is the epoch a network of authorities gets: DefaultNetworkEpoch
// on a quiet machine, longer on a loaded one. An authority's vote window is
// half an epoch, its peers' answers have an eighth and node probes a
// quarter; at load 20-37 on 2 cores (-race) 4 s epochs lost every vote and
// signature exchange, no consensus formed for 40 s, and the last one went
// stale. Scaling by the load when the network starts keeps a quiet run as
// short as before.
func networkEpoch() time.Duration { return LoadScaled(DefaultNetworkEpoch) }

// LoadScaled returns d on a quiet machine and a multiple of it, up to ten
// times, on a loaded one, by the load average when it is called. It is for
// a test's explicit epoch: what runs within an epoch (a node's refresh of
// registrations, topology and next-rotation keys) takes seconds on a busy
// machine, and an epoch shorter than that empties layers for want of keys.
func LoadScaled(d time.Duration) time.Duration {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return d // not Linux: no measure, the default
	}
	var load float64
	if _, err := fmt.Sscan(string(b), &load); err != nil {
		return d
	}
	// Up to two runnable threads a core leaves the default room enough.
	perCore := load / float64(runtime.NumCPU())
	factor := max(1, math.Ceil(perCore/2))
	return time.Duration(min(factor, 10)) * d
}

// EpochLength is the network's epoch, which networkEpoch may have
// lengthened: tests wait a number of epochs, not seconds.
func (n *Net) EpochLength() time.Duration { return n.opts.EpochLength }

// runningAuthority is one authority of a network: a real Server behind a
// real loopback HTTP server.
type runningAuthority struct {
	srv  *authority.Server
	stop func()
	once sync.Once
}

// startAuthorities runs Options.Authorities authorities that vote a
// consensus with threshold Options.Threshold, and writes their network file.
func (n *Net) startAuthorities() {
	t := n.t
	o := n.opts
	network := &directory.Network{Threshold: o.Threshold, Genesis: time.Now().UTC().Truncate(time.Second)}
	dirs := make([]string, o.Authorities)
	lns := make([]net.Listener, o.Authorities)
	for i := range o.Authorities {
		dirs[i] = t.TempDir()
		priv, _, err := authority.LoadOrCreateSigningKey(dirs[i])
		if err != nil {
			t.Fatalf("testnet: authority %d: %v", i, err)
		}
		if lns[i], err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		key, err := directory.KeyFromEd25519(priv.Public().(ed25519.PublicKey))
		if err != nil {
			t.Fatal(err)
		}
		network.Authorities = append(network.Authorities, directory.Authority{
			Name: fmt.Sprintf("auth%d", i+1), Key: key, URL: "http://" + lns[i].Addr().String(),
		})
	}
	text, err := network.Encode()
	if err != nil {
		t.Fatalf("testnet: network file: %v", err)
	}
	n.NetworkFile = filepath.Join(t.TempDir(), "network.toml")
	if err := os.WriteFile(n.NetworkFile, text, 0o600); err != nil {
		t.Fatal(err)
	}
	n.Network = network
	n.authorityDirs = dirs
	for i := range o.Authorities {
		srv, err := authority.NewServer(authority.Config{
			DataDir:        dirs[i],
			Network:        network,
			EpochLength:    o.EpochLength,
			VoteWindow:     o.EpochLength / 2,
			RotationEpochs: o.RotationEpochs,
			// Each probe is a Noise handshake on both sides, all in the
			// test's process: three authorities probing every node each
			// 200 ms took a good part of a core under -race, and on a busy
			// machine the authorities then missed their vote windows. Four
			// probes an epoch are plenty for a test network.
			ProbeInterval: o.EpochLength / 4,
			ProbeTimeout:  max(2*time.Second, o.EpochLength/4),
			Limits:        authority.Limits{MaxEntries: o.MaxEntries, MaxExits: o.MaxExits, LayerSize: o.LayerSize},
			Logger:        o.Logger.With("component", "directory", "authority", network.Authorities[i].Name),
			// As startDirectory: every node is on 127.0.0.1, and the
			// monitor's test loops would land in a test's Deliver hook.
			Admission: authority.Admission{MaxSeatsPerAddress: -1, MaxSeatsPerPrefix: -1},
			Monitor:   authority.Monitor{Loops: monitorLoops(o.Deliver != nil)},
			Tickets:   authority.Tickets{Disabled: !o.Tickets},
		})
		if err != nil {
			t.Fatalf("testnet: authority %d: %v", i, err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		hs := &http.Server{Handler: srv}
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); hs.Serve(lns[i]) }()
		go func() { defer wg.Done(); srv.Run(ctx) }()
		ra := &runningAuthority{srv: srv}
		ra.stop = func() {
			cancel()
			hs.Close()
			wg.Wait()
			srv.Close()
		}
		n.authorities = append(n.authorities, ra)
		t.Cleanup(func() { n.StopAuthority(i) })
	}
	n.Directory = n.authorities[0].srv
	n.DirectoryURL = network.Authorities[0].URL
	n.DirectoryKey = network.Authorities[0].Key.Ed25519()
}

// StopAuthority stops authority i of a network (Options.Authorities > 1):
// it no longer answers, and its address refuses connections.
func (n *Net) StopAuthority(i int) {
	a := n.authorities[i]
	a.once.Do(a.stop)
}

// Authority returns the server of authority i of a network.
func (n *Net) Authority(i int) *authority.Server { return n.authorities[i].srv }

// AuthorityDir is the data directory of authority i (0 for the single
// directory): its database and vouchers file are there.
func (n *Net) AuthorityDir(i int) string { return n.authorityDirs[i] }

// AddVouchers installs vouchers at every authority, as `nym-api vouchers
// add` does while they run.
func (n *Net) AddVouchers(vs ...ticket.Voucher) {
	n.t.Helper()
	for _, dir := range n.authorityDirs {
		if _, err := authority.AddVouchers(dir, vs); err != nil {
			n.t.Fatalf("testnet: vouchers: %v", err)
		}
	}
}
