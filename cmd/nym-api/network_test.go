package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nym-go/nym/mixnet/directory"
)

// freeAddr returns a loopback address nothing listens on now. The network
// file needs every URL before the authorities start.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// apiProcess is a running `nym-api run`.
type apiProcess struct {
	cmd     *exec.Cmd
	logDone chan struct{}
	mu      sync.Mutex
	log     strings.Builder
}

func (p *apiProcess) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// startAPI runs `nym-api run` with args; it is stopped with SIGTERM and
// must exit cleanly at the end of the test.
func startAPI(t *testing.T, bin, name string, args ...string) *apiProcess {
	t.Helper()
	p := &apiProcess{cmd: exec.Command(bin, append([]string{"run"}, args...)...), logDone: make(chan struct{})}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { // owns the pipe until the process closes it
		defer close(p.logDone)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.log.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
		}
		io.Copy(io.Discard, stderr)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		exited := make(chan error, 1)
		go func() { <-p.logDone; exited <- p.cmd.Wait() }()
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("%s exited with %v after SIGTERM", name, err)
			}
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			t.Errorf("%s did not exit within 10s of SIGTERM", name)
		}
		t.Logf("%s log:\n%s", name, p.logs())
	})
	return p
}

// TestNetworkOfThreeProcesses: three `nym-api init` keys assembled with
// `nym-api network` into a network file; three `nym-api run --network`
// processes; fake nodes register with each; a network client gets a
// consensus signed by all three, and the metrics count votes and
// signatures.
func TestNetworkOfThreeProcesses(t *testing.T) {
	bin := buildBinary(t)
	var args []string
	var dirs, addrs []string
	for i := range 3 {
		dir := filepath.Join(t.TempDir(), fmt.Sprintf("auth%d", i+1))
		out, _, err := nymAPI(t, bin, "init", "--data-dir", dir)
		if err != nil {
			t.Fatalf("init: %v", err)
		}
		addr := freeAddr(t)
		dirs, addrs = append(dirs, dir), append(addrs, addr)
		args = append(args, fmt.Sprintf("auth%d=%s@http://%s", i+1, strings.TrimSpace(out), addr))
	}
	netFile := filepath.Join(t.TempDir(), "network.toml")
	genesis := time.Now().UTC().Truncate(time.Second).Format(time.RFC3339)
	if _, stderr, err := nymAPI(t, bin, append([]string{"network", "--out", netFile, "--genesis", genesis}, args...)...); err != nil {
		t.Fatalf("network: %v %s", err, stderr)
	}
	nw, err := directory.LoadNetwork(netFile)
	if err != nil {
		t.Fatal(err)
	}
	if nw.Threshold != 2 || len(nw.Authorities) != 3 {
		t.Fatalf("network file: %+v", nw)
	}
	metrics := freeAddr(t)
	for i := range 3 {
		extra := []string{"--data-dir", dirs[i], "--listen", addrs[i], "--network", netFile,
			"--epoch-length", "1500ms", "--vote-window", "600ms", "--rotation-epochs", "1000", "--probe-interval", "100ms", "--log-level", "debug",
			"--probe-timeout", "2s", "--max-seats-per-address", "-1", "--max-seats-per-prefix", "-1"} // every node is on 127.0.0.1
		if i == 0 {
			extra = append(extra, "--metrics-listen", metrics)
		}
		startAPI(t, bin, nw.Authorities[i].Name, extra...)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	nodes := []*fakeNode{
		newFakeNode(t, directory.Capabilities{Entry: true}),
		newFakeNode(t, directory.Capabilities{Entry: true, Exit: true}),
		newFakeNode(t, directory.Capabilities{Mixnode: true}),
		newFakeNode(t, directory.Capabilities{Mixnode: true}),
		newFakeNode(t, directory.Capabilities{Mixnode: true}),
	}
	client := directory.NewNetworkClient(nw, &http.Client{Timeout: 5 * time.Second})
	deadline := time.Now().Add(45 * time.Second)
	for {
		// Register with every authority, as nodes of a network do.
		for _, a := range nw.Authorities {
			for _, n := range nodes {
				if err := n.register(ctx, client.ForAuthority(a)); err != nil && time.Now().After(deadline) {
					t.Fatalf("register with %s: %v", a.Name, err)
				}
			}
		}
		top, err := client.Topology(ctx)
		if err == nil && top.Routable() == nil {
			sc, err := client.FetchSignedConsensus(ctx, nw.Authorities[0], top.Epoch)
			if err == nil && len(sc.Signatures) == 3 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no routable consensus signed by all three: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	resp, err := http.Get("http://" + metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{"nym_api_votes_received_total", "nym_api_consensus_signatures_collected_total", "nym_api_consensus_failures_total"} {
		if !strings.Contains(string(body), m) {
			t.Errorf("metrics lack %s:\n%s", m, body)
		}
	}
}

func TestNetworkCommandErrors(t *testing.T) {
	bin := buildBinary(t)
	key := directory.Key{1, 2, 3}.String()
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"no authorities", []string{"network"}, "requires at least 1 arg"},
		{"bad form", []string{"network", "auth1:" + key}, "NAME=KEY@URL"},
		{"bad key", []string{"network", "auth1=abc@http://192.0.2.1:8000"}, "base64url"},
		{"threshold too low", []string{"network", "--threshold", "1", "a=" + key + "@http://192.0.2.1:1", "b=" + directory.Key{4}.String() + "@http://192.0.2.2:1"}, "more than half"},
		{"same key twice", []string{"network", "a=" + key + "@http://192.0.2.1:1", "b=" + key + "@http://192.0.2.2:1"}, "used twice"},
		{"run with a missing network file", []string{"run", "--data-dir", t.TempDir(), "--network", "/nonexistent/network.toml"}, "network file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, stderr, err := nymAPI(t, bin, c.args...)
			if err == nil || !strings.Contains(stderr, c.want) {
				t.Fatalf("err=%v stderr=%q, want failure mentioning %q", err, stderr, c.want)
			}
		})
	}
	// A data dir whose key the network file does not list.
	out, _, err := nymAPI(t, bin, "network", "a="+key+"@http://192.0.2.1:1")
	if err != nil {
		t.Fatal(err)
	}
	netFile := filepath.Join(t.TempDir(), "network.toml")
	if err := writeFile(netFile, out); err != nil {
		t.Fatal(err)
	}
	_, stderr, err := nymAPI(t, bin, "run", "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0", "--network", netFile)
	if err == nil || !strings.Contains(stderr, "does not list this authority's key") {
		t.Fatalf("run with a network file without its key: err=%v stderr=%q", err, stderr)
	}
}

func writeFile(path, text string) error { return os.WriteFile(path, []byte(text), 0o644) }
