package vpn

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/node"
)

// miniNet is a mixnet on loopback for these tests: a directory, one mix per
// layer, an entry gateway and an exit gateway announcing routerKey. It is a
// trimmed copy of mixnet/internal/testnet, which Go's internal rule keeps
// out of this package's reach.
type miniNet struct {
	DirectoryURL string
	DirectoryKey ed25519.PublicKey
	Exit         *node.Node
	nodes        []*node.Node
}

func startMiniNet(t *testing.T, routerKey [32]byte) *miniNet {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	srv, err := directory.NewServer(directory.Config{
		DataDir:        t.TempDir(),
		EpochLength:    time.Hour,
		RotationEpochs: 24,
		ProbeInterval:  100 * time.Millisecond,
		ProbeTimeout:   2 * time.Second,
		Limits:         directory.Limits{MaxEntries: 1, MaxExits: 1, LayerSize: 1},
		Logger:         log,
	})
	if err != nil {
		t.Fatalf("directory: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	hs := &http.Server{Handler: srv}
	wg.Go(func() { hs.Serve(ln) })
	wg.Go(func() { srv.Run(ctx) })
	t.Cleanup(func() {
		cancel()
		hs.Close()
		wg.Wait()
		srv.Close()
	})
	m := &miniNet{DirectoryURL: "http://" + ln.Addr().String(), DirectoryKey: srv.PublicKey()}

	modes := []node.Mode{node.ModeMixnode, node.ModeMixnode, node.ModeMixnode, node.ModeEntryGateway, node.ModeExitGateway}
	for i, mode := range modes {
		cfg := node.DefaultConfig()
		cfg.DataDir = filepath.Join(t.TempDir(), fmt.Sprintf("node%d", i))
		cfg.Mode = mode
		cfg.DirectoryURL = m.DirectoryURL
		cfg.DirectoryKey = base64.RawURLEncoding.EncodeToString(m.DirectoryKey)
		cfg.MixnetListen, cfg.HTTPListen, cfg.ClientsListen = freeAddr(t), freeAddr(t), freeAddr(t)
		cfg.RefreshPeriod = node.Duration{Duration: 200 * time.Millisecond}
		opts := node.Options{Logger: log}
		if mode == node.ModeExitGateway {
			opts.RouterKey = &routerKey
		}
		n, err := node.New(cfg, opts)
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		nctx, ncancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- n.Run(nctx) }()
		t.Cleanup(func() {
			ncancel()
			if err := <-done; err != nil {
				t.Errorf("node %d: %v", i, err)
			}
		})
		m.nodes = append(m.nodes, n)
		if mode == node.ModeExitGateway {
			m.Exit = n
		}
	}
	m.waitRoutable(t, 30*time.Second)
	return m
}

func (m *miniNet) topology() (*directory.Topology, error) {
	c := directory.Client{BaseURL: m.DirectoryURL, Key: m.DirectoryKey}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.Topology(ctx)
}

func (m *miniNet) waitRoutable(t *testing.T, timeout time.Duration) *directory.Topology {
	t.Helper()
	var last error
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		top, err := m.topology()
		if err == nil {
			if err = top.Routable(); err == nil {
				if err = m.nodesFollow(top); err == nil {
					return top
				}
			}
		}
		last = err
	}
	t.Fatalf("mixnet not routable after %v: %v", timeout, last)
	return nil
}

// nodesFollow reports an error until every node has taken the role the
// topology gives it.
func (m *miniNet) nodesFollow(top *directory.Topology) error {
	for i, n := range m.nodes {
		if n.Epoch() < top.Epoch {
			return fmt.Errorf("node %d is at epoch %d, topology at %d", i, n.Epoch(), top.Epoch)
		}
		want, wl := top.RoleOf(directory.Key(n.Identity()))
		got, gl := n.Role()
		if want != got || wl != gl {
			return fmt.Errorf("node %d has role %v/%d, topology says %v/%d", i, got, gl, want, wl)
		}
	}
	return nil
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
