package authority

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nym-go/nym/mixnet/directory"
	"github.com/prometheus/client_golang/prometheus"
)

// Epochs of the network tests: long enough for a vote window on a busy
// machine, short enough for several epochs in a test.
const (
	netEpoch  = 2400 * time.Millisecond
	netWindow = 1600 * time.Millisecond
	// netProbe is the authorities' probe interval. Each probe is a Noise
	// handshake on each side, all in this process: at 100 ms three
	// authorities probing six nodes took half a core under -race, more
	// than a test gets of two cores at load 10, and the authorities fell
	// behind the wall-clock vote windows. Two probes an epoch are what a
	// real network makes too (the default is EpochLength/6).
	netProbe = netEpoch / 2
)

// logCapture keeps an authority's log lines so tests can wait for one.
type logCapture struct {
	mu    sync.Mutex
	lines []string
}

func (c *logCapture) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lines = append(c.lines, string(p))
	return len(p), nil
}

// find returns the first line containing every one of subs.
func (c *logCapture) find(subs ...string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
next:
	for _, l := range c.lines {
		for _, s := range subs {
			if !strings.Contains(l, s) {
				continue next
			}
		}
		return l, true
	}
	return "", false
}

// netAuthority is one authority of a test network: a real Server behind a
// real loopback HTTP server that outlives restarts (its URL is in the
// network file).
type netAuthority struct {
	name string
	dir  string
	priv ed25519.PrivateKey
	http *httptest.Server
	logs *logCapture

	cur atomic.Pointer[Server]
	// alt, when set, answers instead of the authority: an impostor.
	alt    atomic.Pointer[http.Handler]
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan struct{}
	// tamper, when set before start, makes the authority lie.
	tamperVote func(*directory.Vote, []directory.Descriptor) []directory.Descriptor
	tamperDoc  func(*directory.Topology)
}

// testNet is a network of authorities with k = threshold.
type testNet struct {
	t *testing.T
	// ttl is the authorities' DescriptorTTL; default an hour.
	ttl time.Duration
	// cut[i] lists the authorities authority i cannot reach: a partition.
	cut   map[int][]int
	net   *directory.Network
	auths []*netAuthority
	// tickets turns the authorities' ticket issuance on; off, they make no
	// issuer keys (RSA key generation would load the machine under the
	// consensus tests' short vote windows).
	tickets bool
}

// newTestNet makes n authorities (keys, data dirs, listeners) and their
// network file; start them with start.
func newTestNet(t *testing.T, n, k int) *testNet {
	t.Helper()
	tn := &testNet{t: t, net: &directory.Network{Threshold: k, Genesis: time.Now().UTC().Truncate(time.Second)}}
	for i := range n {
		a := &netAuthority{name: fmt.Sprintf("auth%d", i+1), dir: t.TempDir(), logs: &logCapture{}}
		priv, _, err := LoadOrCreateSigningKey(a.dir)
		if err != nil {
			t.Fatal(err)
		}
		a.priv = priv
		a.http = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if alt := a.alt.Load(); alt != nil {
				(*alt).ServeHTTP(w, r)
				return
			}
			s := a.cur.Load()
			if s == nil {
				panic(http.ErrAbortHandler) // down: the connection drops unanswered
			}
			s.ServeHTTP(w, r)
		}))
		t.Cleanup(a.http.Close)
		tn.net.Authorities = append(tn.net.Authorities, directory.Authority{Name: a.name, Key: directory.Key(priv.Public().(ed25519.PublicKey)), URL: a.http.URL})
		tn.auths = append(tn.auths, a)
	}
	if err := tn.net.Validate(); err != nil {
		t.Fatal(err)
	}
	return tn
}

// start runs authority i (again).
func (tn *testNet) start(i int) {
	t := tn.t
	t.Helper()
	a := tn.auths[i]
	a.reg = prometheus.NewRegistry()
	ttl := tn.ttl
	if ttl == 0 {
		ttl = time.Hour
	}
	logger := slog.New(slog.NewTextHandler(multiWriter{testWriter{t}, a.logs}, &slog.HandlerOptions{Level: slog.LevelDebug})).With("self", a.name)
	s, err := NewServer(Config{
		DataDir: a.dir, Network: tn.net, EpochLength: netEpoch, VoteWindow: netWindow, RotationEpochs: 1000,
		ProbeInterval: netProbe, DescriptorTTL: ttl, Logger: logger,
		PeerClient: tn.peerClient(i), Registerer: a.reg,
		// A Noise handshake under -race takes more than the default 100 ms;
		// every test node is on 127.0.0.1, so no per-address seat limit.
		ProbeTimeout: 2 * time.Second,
		Admission:    Admission{MaxSeatsPerAddress: -1, MaxSeatsPerPrefix: -1},
		Tickets:      Tickets{Disabled: !tn.tickets},
	})
	if err != nil {
		t.Fatal(err)
	}
	s.cons.tamperVote, s.cons.tamperDoc = a.tamperVote, a.tamperDoc
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel, a.done = cancel, make(chan struct{})
	go func() {
		defer close(a.done)
		s.Run(ctx)
	}()
	a.cur.Store(s)
	t.Cleanup(func() { tn.stop(i) })
}

// peerClient is authority i's client for its peers; it cannot dial the
// authorities tn.cut[i] names.
func (tn *testNet) peerClient(i int) *http.Client {
	blocked := make(map[string]bool)
	for _, j := range tn.cut[i] {
		blocked[tn.auths[j].http.Listener.Addr().String()] = true
	}
	var d net.Dialer
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if blocked[addr] {
				return nil, fmt.Errorf("dial %s: partitioned by the test", addr)
			}
			return d.DialContext(ctx, network, addr)
		},
	}}
}

// stop takes authority i down: it stops answering, its loops end and its
// state is closed.
func (tn *testNet) stop(i int) {
	a := tn.auths[i]
	s := a.cur.Swap(nil)
	if s == nil {
		return
	}
	a.cancel()
	<-a.done
	s.Close()
}

// register registers every node with every authority, over HTTP.
func (tn *testNet) register(nodes ...*testNode) {
	tn.t.Helper()
	tn.registerWith(tn.net.Authorities, nodes...)
}

// registerWith registers every node with the given authorities.
func (tn *testNet) registerWith(auths []directory.Authority, nodes ...*testNode) {
	t := tn.t
	t.Helper()
	for _, a := range auths {
		c := &directory.Client{BaseURL: a.URL, Key: a.Key.Ed25519(), HTTP: &http.Client{Timeout: 5 * time.Second}}
		for _, n := range nodes {
			if err := c.Register(context.Background(), n.signed(t, time.Now())); err != nil {
				t.Fatalf("register with %s: %v", a.Name, err)
			}
		}
	}
}

// consensusOf fetches authority i's document of epoch, unverified; ok is
// false when it has none.
func (tn *testNet) consensusOf(i int, epoch uint64) (directory.SignedConsensus, bool) {
	c := directory.NewNetworkClient(tn.net, &http.Client{Timeout: 5 * time.Second})
	sc, err := c.FetchSignedConsensus(context.Background(), tn.net.Authorities[i], epoch)
	return sc, err == nil
}

// signedDocs fetches the documents of epoch from the first count
// authorities; ok when each has at least minSigners valid signatures.
func (tn *testNet) signedDocs(epoch uint64, count, minSigners int) ([]directory.SignedConsensus, bool) {
	var docs []directory.SignedConsensus
	for i := range count {
		sc, ok := tn.consensusOf(i, epoch)
		if !ok || len(tn.signers(sc)) < minSigners {
			return nil, false
		}
		docs = append(docs, sc)
	}
	return docs, true
}

// waitFor polls cond until it holds, failing after a generous deadline.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// pollUntil polls cond until it holds (true) or deadline passes (false).
func pollUntil(deadline time.Time, cond func() bool) bool {
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// epochNow is the network's current epoch by the local clock.
func (tn *testNet) epochNow() uint64 {
	return uint64(time.Since(tn.net.Genesis) / netEpoch)
}

// epochStart is when epoch starts.
func (tn *testNet) epochStart(epoch uint64) time.Time {
	return tn.net.Genesis.Add(time.Duration(epoch) * netEpoch)
}

// signers names the authorities of the network whose signatures on sc are
// valid.
func (tn *testNet) signers(sc directory.SignedConsensus) []string {
	var out []string
	for _, s := range sc.Signatures {
		if a, ok := tn.net.Authority(s.Key); ok && s.Valid(sc.Topology) {
			out = append(out, a.Name)
		}
	}
	return out
}

// decode reads a document's topology without verifying it.
func decode(t *testing.T, sc directory.SignedConsensus) *directory.Topology {
	t.Helper()
	var top directory.Topology
	if err := json.Unmarshal(sc.Topology, &top); err != nil {
		t.Fatal(err)
	}
	return &top
}

func sameDoc(a, b directory.SignedConsensus) bool { return bytes.Equal(a.Topology, b.Topology) }

type multiWriter []interface{ Write([]byte) (int, error) }

func (m multiWriter) Write(p []byte) (int, error) {
	for _, w := range m {
		w.Write(p)
	}
	return len(p), nil
}
