package authority_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/nym-go/nym/internal/testnet"
	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/link"
)

// dropper is a mixnode that does everything a directory can see from the
// outside (it registers a signed descriptor, answers its health endpoint,
// completes Noise handshakes with its announced key and accepts the links
// of its neighbours) but drops every packet it is sent.
type dropper struct {
	priv ed25519.PrivateKey
	desc directory.Descriptor
}

func startDropper(t *testing.T) *dropper {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	noise, err := link.GenerateKeyPair(nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := link.NewServer(link.ServerConfig{Config: link.Config{Static: noise, Logger: slog.New(slog.DiscardHandler)}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	health := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"status":"ok"}`)
	}))
	t.Cleanup(health.Close)
	key := func() directory.Key {
		var k directory.Key
		rand.Read(k[:])
		return k
	}
	sphinx := make([]directory.SphinxKey, 0, 2)
	for r := range uint64(2) {
		sphinx = append(sphinx, directory.SphinxKey{Rotation: r, Key: key()})
	}
	return &dropper{priv: priv, desc: directory.Descriptor{
		Identity:     directory.Key(pub),
		NoiseKey:     directory.Key(noise.Public),
		SphinxKeys:   sphinx,
		MixnetAddr:   ln.Addr().String(),
		HTTPAddr:     health.Listener.Addr().String(),
		Capabilities: directory.Capabilities{Mixnode: true},
		Version:      "dropper",
	}}
}

// register keeps the dropper's descriptor fresh until ctx ends, as a node
// does.
func (d *dropper) register(ctx context.Context, t *testing.T, c *directory.Client, every time.Duration) {
	for {
		desc := d.desc
		desc.IssuedAt = time.Now()
		sd, err := directory.SignDescriptor(d.priv, desc)
		if err != nil {
			t.Error(err)
			return
		}
		if err := c.Register(ctx, sd); err != nil && ctx.Err() == nil {
			t.Logf("dropper registration: %v", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

// TestDropperLosesItsSeat: a mixnode that drops every packet it is sent
// while answering every probe joins a running network. On the old code its
// HTTP answers kept its seat (score 1.0) and every route through it was
// lost; the authority's test loops, Sphinx packets it sends through real
// routes to itself, now find it and take its seat at the next boundary,
// while the honest nodes keep theirs.
func TestDropperLosesItsSeat(t *testing.T) {
	var logger *slog.Logger
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	const epoch = 3 * time.Second
	n := testnet.Start(t, testnet.Options{Mixnodes: 5, LayerSize: 2, EpochLength: epoch, Logger: logger})
	d := startDropper(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	client := &directory.Client{BaseURL: n.DirectoryURL, Key: n.DirectoryKey, HTTP: &http.Client{Timeout: 5 * time.Second}}
	go func() { defer close(done); d.register(ctx, t, client, epoch/2) }()
	t.Cleanup(func() { cancel(); <-done })

	seated := func(top *directory.Topology) bool {
		role, _ := top.RoleOf(d.desc.Identity)
		return role == directory.RoleMix
	}
	wait := func(what string, cond func(*directory.Topology) bool) *directory.Topology {
		t.Helper()
		deadline := time.Now().Add(30 * epoch)
		for {
			top := n.Directory.Topology()
			if cond(top) {
				return top
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s (epoch %d)", what, top.Epoch)
			}
			time.Sleep(epoch / 20)
		}
	}
	in := wait("the dropper to take a mix seat", seated)
	t.Logf("dropper seated in epoch %d", in.Epoch)
	out := wait("the dropper to lose its seat", func(top *directory.Topology) bool { return top.Epoch > in.Epoch && !seated(top) })
	t.Logf("dropper lost its seat in epoch %d", out.Epoch)
	if err := out.Routable(); err != nil {
		t.Fatalf("after the dropper left: %v", err)
	}
	for _, nd := range n.Nodes() {
		if role, _ := out.RoleOf(directory.Key(nd.Identity())); role == directory.RoleNone || role == directory.RoleStandby {
			t.Errorf("honest node %d holds no seat in epoch %d", nd.Index, out.Epoch)
		}
	}
}
