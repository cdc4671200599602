package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nym-go/nym/mixnet/authority"
	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/link"
)

// buildBinary compiles nym-api into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "nym-api")
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool in PATH to build nym-api")
	}
	out, err := exec.Command(goTool, "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// nymAPI runs a short-lived subcommand and returns its stdout, stderr and
// error.
func nymAPI(t *testing.T, bin string, args ...string) (string, string, error) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// fakeNode is a node the test registers: keys, a descriptor and a health
// server.
type fakeNode struct {
	priv   ed25519.PrivateKey
	desc   directory.Descriptor
	health *httptest.Server
}

func newFakeNode(t *testing.T, caps directory.Capabilities) *fakeNode {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	health := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"status":"ok"}`)
	}))
	t.Cleanup(health.Close)
	key := func() directory.Key {
		var k directory.Key
		rand.Read(k[:])
		return k
	}
	id, _ := directory.KeyFromEd25519(pub)
	noise, mixnetAddr := serveLink(t)
	d := directory.Descriptor{
		Identity:     id,
		NoiseKey:     noise,
		SphinxKeys:   []directory.SphinxKey{{Rotation: 0, Key: key()}, {Rotation: 1, Key: key()}},
		MixnetAddr:   mixnetAddr,
		HTTPAddr:     health.Listener.Addr().String(),
		Capabilities: caps,
		Version:      "e2e",
	}
	if caps.Gateway() {
		ln, err := net.Listen("tcp", "127.0.0.1:0") // a port of its own: addresses are unique
		if err != nil {
			t.Fatal(err)
		}
		d.ClientsAddr = ln.Addr().String()
		ln.Close()
	}
	return &fakeNode{priv: priv, desc: d, health: health}
}

// serveLink runs a Noise listener with a fresh key until the test ends, as
// a node's mixnet port, which the authority's probes handshake with.
func serveLink(t *testing.T) (directory.Key, string) {
	t.Helper()
	key, err := link.GenerateKeyPair(nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := link.NewServer(link.ServerConfig{Config: link.Config{Static: key, Logger: slog.New(slog.DiscardHandler)}})
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
	return directory.Key(key.Public), ln.Addr().String()
}

func (n *fakeNode) register(ctx context.Context, c *directory.Client) error {
	d := n.desc
	d.IssuedAt = time.Now()
	sd, err := directory.SignDescriptor(n.priv, d)
	if err != nil {
		return err
	}
	return c.Register(ctx, sd)
}

var listeningRE = regexp.MustCompile(`msg=listening addr=(\S+)`)

// TestEndToEnd builds the real binary, runs it with short epochs, registers
// fake nodes and fetches and verifies the topology with the key printed by
// `nym-api identity`; then stops it with SIGTERM.
func TestEndToEnd(t *testing.T) {
	bin := buildBinary(t)
	dataDir := filepath.Join(t.TempDir(), "api")

	// Before any run there is no key, and identity says what to do.
	_, stderr, err := nymAPI(t, bin, "identity", "--data-dir", dataDir)
	if err == nil || !strings.Contains(stderr, "nym-api init") {
		t.Fatalf("identity without a key: err=%v stderr=%q", err, stderr)
	}
	initOut, _, err := nymAPI(t, bin, "init", "--data-dir", dataDir)
	if err != nil {
		t.Fatalf("init: %v", err)
	}
	idOut, _, err := nymAPI(t, bin, "identity", "--data-dir", dataDir)
	if err != nil || idOut != initOut {
		t.Fatalf("identity = %q, %v; init printed %q", idOut, err, initOut)
	}
	dirKey, err := directory.ParseKey(strings.TrimSpace(idOut))
	if err != nil {
		t.Fatalf("identity printed %q: %v", idOut, err)
	}

	cmd := exec.Command(bin, "run", "--listen", "127.0.0.1:0", "--data-dir", dataDir,
		"--epoch-length", "500ms", "--probe-interval", "50ms", "--probe-timeout", "2s", "--layer-size", "1",
		"--max-seats-per-address", "-1", "--max-seats-per-prefix", "-1") // every node is on 127.0.0.1
	stderrPipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	addrc := make(chan string, 1)
	logDone := make(chan struct{})
	var logTail strings.Builder
	go func() { // owns the pipe until the process closes it
		defer close(logDone)
		sc := bufio.NewScanner(stderrPipe)
		for sc.Scan() {
			line := sc.Text()
			t.Log("nym-api: " + line)
			logTail.WriteString(line + "\n")
			if m := listeningRE.FindStringSubmatch(line); m != nil {
				addrc <- m[1]
			}
		}
	}()
	stopped := false
	defer func() {
		if !stopped {
			cmd.Process.Kill()
			<-logDone
			cmd.Wait()
		}
	}()

	var addr string
	select {
	case addr = <-addrc:
	case <-time.After(20 * time.Second):
		t.Fatal("nym-api did not report its listening address")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := &directory.Client{BaseURL: "http://" + addr, Key: dirKey.Ed25519(), HTTP: &http.Client{Timeout: 5 * time.Second}}
	nodes := []*fakeNode{
		newFakeNode(t, directory.Capabilities{Entry: true}),
		newFakeNode(t, directory.Capabilities{Entry: true, Exit: true}),
		newFakeNode(t, directory.Capabilities{Mixnode: true}),
		newFakeNode(t, directory.Capabilities{Mixnode: true}),
		newFakeNode(t, directory.Capabilities{Mixnode: true}),
		newFakeNode(t, directory.Capabilities{Mixnode: true, Entry: true, Exit: true}),
	}

	// Register (and keep refreshing, as nodes do) until every node is listed
	// in a routable topology.
	var top *directory.Topology
	deadline := time.Now().Add(20 * time.Second)
	for {
		for _, n := range nodes {
			if err := n.register(ctx, client); err != nil {
				t.Fatalf("register: %v", err)
			}
		}
		top, err = client.Topology(ctx)
		if err != nil {
			t.Fatalf("fetch topology: %v", err)
		}
		listed := 0
		for _, n := range nodes {
			if role, _ := top.RoleOf(n.desc.Identity); role != directory.RoleNone {
				listed++
			}
		}
		if top.Routable() == nil && listed == len(nodes) && top.Epoch > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("topology never listed all nodes: epoch %d, %d listed, %v", top.Epoch, listed, top.Routable())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if top.DirectoryKey != dirKey {
		t.Fatalf("topology names directory %s, want %s", top.DirectoryKey, dirKey)
	}
	for _, n := range nodes {
		got, ok := top.NodeByIdentity(n.desc.Identity)
		if !ok || got.NoiseKey != n.desc.NoiseKey || got.HTTPAddr != n.desc.HTTPAddr {
			t.Fatalf("node %s listed as %+v", n.desc.Identity, got)
		}
		role, _ := top.RoleOf(n.desc.Identity)
		if role != directory.RoleStandby {
			if _, ok := top.SphinxKeyFor(n.desc.Identity, top.Rotation); !ok {
				t.Fatalf("routed node %s has no sphinx key for rotation %d", n.desc.Identity, top.Rotation)
			}
		}
	}
	if role, _ := top.RoleOf(nodes[2].desc.Identity); role != directory.RoleMix && role != directory.RoleStandby {
		t.Fatalf("mix-only node got role %s", role)
	}

	// A client pinning another key refuses this directory's topology.
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	wrong := &directory.Client{BaseURL: client.BaseURL, Key: otherKey.Public().(ed25519.PublicKey)}
	if _, err := wrong.Topology(ctx); !errors.Is(err, directory.ErrUntrustedDirectory) {
		t.Fatalf("client with another pinned key: %v", err)
	}

	// SIGTERM: clean exit.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	go func() { <-logDone; exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			t.Fatalf("nym-api exited with %v after SIGTERM", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("nym-api did not exit within 10s of SIGTERM")
	}
	if !strings.Contains(logTail.String(), "msg=stopped") {
		t.Fatal("no clean-shutdown log line")
	}
}

func TestCommandLineErrors(t *testing.T) {
	bin := buildBinary(t)
	dataDir := t.TempDir()
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"run without data dir", []string{"run"}, "--data-dir is required"},
		{"bad duration", []string{"run", "--data-dir", dataDir, "--epoch-length", "banana"}, "invalid argument"},
		{"tiny epoch", []string{"run", "--data-dir", dataDir, "--epoch-length", "1ms"}, "at least 50ms"},
		{"probe slower than epoch", []string{"run", "--data-dir", dataDir, "--epoch-length", "1s", "--probe-interval", "2s"}, "shorter than --epoch-length"},
		{"bad listen", []string{"run", "--data-dir", dataDir, "--listen", "8080"}, "--listen"},
		{"zero layer size", []string{"run", "--data-dir", dataDir, "--layer-size", "0"}, "--layer-size"},
		{"bad log level", []string{"run", "--data-dir", dataDir, "--log-level", "loud"}, "--log-level"},
		{"unknown flag", []string{"run", "--frobnicate"}, "unknown flag"},
		{"identity without data dir", []string{"identity"}, "--data-dir is required"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, stderr, err := nymAPI(t, bin, c.args...)
			if err == nil || !strings.Contains(stderr, c.want) {
				t.Fatalf("err=%v stderr=%q, want failure mentioning %q", err, stderr, c.want)
			}
		})
	}

	// A signing key readable by others stops `run` before it serves.
	if _, _, err := nymAPI(t, bin, "init", "--data-dir", dataDir); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(dataDir, authority.SigningKeyFile), 0o644)
	_, stderr, err := nymAPI(t, bin, "run", "--data-dir", dataDir, "--listen", "127.0.0.1:0")
	if err == nil || !strings.Contains(stderr, "chmod 600") {
		t.Fatalf("run with a 0644 key: err=%v stderr=%q", err, stderr)
	}
}
