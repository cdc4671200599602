package node

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"log/slog"
	"testing"
	"time"

	"github.com/nym-go/nym/mixnet/gatewire"
	"github.com/nym-go/nym/mixnet/link"
)

// A node hands its configured gateway limits to its gateway: with
// max_clients = 1, a second client is told the gateway is full.
func TestNodeGatewayGetsLimits(t *testing.T) {
	cfg := isolatedConfig(t, ModeEntryGateway)
	cfg.MaxClients = 1
	n, err := New(cfg, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	g := n.Gateway()
	if g == nil {
		t.Fatal("entry gateway node has no gateway")
	}

	// Serve clients only: the rest of the node, which needs a directory,
	// plays no part in admitting them.
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- n.serveClients(ctx, n.clientsLn) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve clients: %v", err)
		}
		n.closeListeners()
		if err := g.Close(); err != nil {
			t.Errorf("close gateway: %v", err)
		}
	}()

	dial := func() (link.KeyPair, *link.Conn, chan *gatewire.Status) {
		t.Helper()
		key, err := link.GenerateKeyPair(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		statuses := make(chan *gatewire.Status, 16)
		c, err := link.Dial(context.Background(), n.clientsLn.Addr().String(), n.NoiseKey(), link.Config{
			Static: key,
			Handler: func(_ *link.Conn, f link.Frame) error {
				if m, err := gatewire.Parse(f.Payload); err == nil {
					if st, ok := m.(*gatewire.Status); ok {
						select {
						case statuses <- st:
						default:
						}
					}
				}
				return nil
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return key, c, statuses
	}

	first, _, _ := dial()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if st, ok := g.Client(first.Public); ok && st.Connected {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("first client not registered")
		}
		time.Sleep(10 * time.Millisecond)
	}
	_, second, statuses := dial()
	select {
	case st := <-statuses:
		if st.Code != gatewire.StatusRefused || st.Text != "gateway full" {
			t.Fatalf("second client got status %d %q, want refused \"gateway full\"", st.Code, st.Text)
		}
	case <-second.Done():
		t.Fatal("second client closed without being told why")
	case <-time.After(10 * time.Second):
		t.Fatal("second client admitted beyond max_clients = 1")
	}
	if st, ok := g.Client(first.Public); !ok || !st.Connected {
		t.Error("first client lost its place")
	}
}

// isolatedConfig is a node of mode m on loopback ports, with a directory
// that is never reached: for tests of one part of a node, run on its own.
func isolatedConfig(t *testing.T, m Mode) Config {
	t.Helper()
	dirPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.Mode = m
	cfg.DirectoryURL = "http://127.0.0.1:1"
	cfg.DirectoryKey = base64.RawURLEncoding.EncodeToString(dirPub)
	cfg.MixnetListen, cfg.HTTPListen, cfg.ClientsListen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.ReplayCapacity = 10_000
	return cfg
}
