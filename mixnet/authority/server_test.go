package authority

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"github.com/nym-go/nym/mixnet/directory"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func postDescriptor(t *testing.T, url string, body []byte) (int, string) {
	t.Helper()
	resp, err := http.Post(url+directory.PathNodes, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data)
}

func TestRegisterValidatesDescriptors(t *testing.T) {
	s, clock := newTestServer(t, Config{})
	ts := httptest.NewServer(s)
	defer ts.Close()
	n := newTestNode(t, autoNode)
	now := clock.Now()
	encode := func(sd directory.SignedDescriptor) []byte { b, _ := json.Marshal(sd); return b }

	good := n.signed(t, now)
	badSig := n.signed(t, now)
	badSig.Signature[0] ^= 1
	other := newTestNode(t, mixOnly)
	// The descriptor signing domain, spelled out: the wire format fixes it.
	signedBytes := append([]byte("nym-go/directory/descriptor/v1\x00"), good.Descriptor...)
	impersonation := directory.SignedDescriptor{Descriptor: good.Descriptor, Signature: ed25519.Sign(other.priv, signedBytes)}

	for _, c := range []struct {
		name   string
		body   []byte
		status int
		want   string
	}{
		{"fresh descriptor", encode(good), 200, `"epoch":0`},
		{"same descriptor again", encode(good), 200, `"identity"`},
		{"newer descriptor", encode(n.signed(t, now.Add(time.Second))), 200, `"identity"`},
		{"replayed older descriptor", encode(good), 409, "older than the one held"},
		{"bad signature", encode(badSig), 403, "signature does not verify"},
		{"identity's descriptor signed by another node", encode(impersonation), 403, "signed by the identity it names"},
		{"issued 6 minutes ago", encode(n.signed(t, now.Add(-6*time.Minute))), 400, "clock"},
		{"issued 6 minutes ahead", encode(n.signed(t, now.Add(6*time.Minute))), 400, "clock"},
		{"oversized body", bytes.Repeat([]byte("a"), directory.MaxSignedDescriptorSize+1), 413, "exceeds"},
		{"not JSON", []byte("hello"), 400, "not a signed descriptor"},
		{"empty", nil, 400, ""},
		{"JSON null", []byte("null"), 400, ""},
		{"wrong shape", []byte(`{"descriptor":"x","signature":5}`), 400, ""},
		{"descriptor is garbage", []byte(`{"descriptor":{"identity":[1,2]},"signature":"AAAA"}`), 400, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, body := postDescriptor(t, ts.URL, c.body)
			if status != c.status || !strings.Contains(body, c.want) {
				t.Fatalf("got %d %s, want %d containing %q", status, body, c.status, c.want)
			}
			if status != 200 && !strings.Contains(body, `"error"`) {
				t.Fatalf("error answer %q is not a JSON error", body)
			}
		})
	}
	if len(s.nodes) != 1 {
		t.Fatalf("directory holds %d nodes, want 1", len(s.nodes))
	}
}

// TestRegisterGarbageNeverPanics throws random and mangled bodies at the
// registration endpoint: every answer is a 4xx and the server keeps serving.
func TestRegisterGarbageNeverPanics(t *testing.T) {
	s, clock := newTestServer(t, Config{})
	ts := httptest.NewServer(s)
	defer ts.Close()
	n := newTestNode(t, exitGW)
	valid, _ := json.Marshal(n.signed(t, clock.Now()))
	buf := make([]byte, 600)
	for i := range 300 {
		var body []byte
		switch i % 3 {
		case 0:
			rand.Read(buf)
			body = buf[:i%len(buf)]
		case 1: // a valid body with one byte changed
			body = bytes.Clone(valid)
			body[i%len(body)] ^= byte(1 + i%255)
		case 2: // a valid body cut short
			body = valid[:i%len(valid)]
		}
		status, resp := postDescriptor(t, ts.URL, body)
		if status == 200 && i%3 == 1 {
			// A flip that only changes the case of an envelope field name
			// still decodes (JSON names match case-insensitively) and the
			// signed bytes are intact: a legitimate re-registration.
			continue
		}
		if status < 400 || status > 499 {
			t.Fatalf("body %q: got %d %s, want 4xx", string(body[:min(len(body), 80)]), status, resp)
		}
	}
	if resp, err := http.Get(ts.URL + directory.PathHealth); err != nil || resp.StatusCode != 200 {
		t.Fatalf("health after garbage: %v %v", resp, err)
	}
}

func TestWrongMethodAndPath(t *testing.T) {
	s, _ := newTestServer(t, Config{})
	ts := httptest.NewServer(s)
	defer ts.Close()
	resp, _ := http.Get(ts.URL + directory.PathNodes)
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET nodes: %d, want 405", resp.StatusCode)
	}
	resp, _ = http.Post(ts.URL+directory.PathTopology, "application/json", nil)
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST topology: %d, want 405", resp.StatusCode)
	}
	resp, _ = http.Get(ts.URL + "/api/v1/nope")
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown path: %d, want 404", resp.StatusCode)
	}
}

// network registers a routable set: an entry, an exit, four mix-only nodes
// (three in layers, one on standby with LayerSize 1).
func network(t *testing.T) []*testNode {
	return []*testNode{
		newTestNode(t, entryGW), newTestNode(t, directory.Capabilities{Exit: true}),
		newTestNode(t, mixOnly), newTestNode(t, mixOnly), newTestNode(t, mixOnly), newTestNode(t, mixOnly),
	}
}

func layerOf(top *directory.Topology, id directory.Key) int {
	role, layer := top.RoleOf(id)
	if role != directory.RoleMix {
		return 0
	}
	return layer
}

// TestDeadNodeReplacedByStandby: a mix whose health endpoint stops answering
// leaves the topology at the next epoch and the standby takes its layer.
func TestDeadNodeReplacedByStandby(t *testing.T) {
	s, clock := newTestServer(t, Config{Limits: Limits{LayerSize: 1}})
	nodes := network(t)
	registerAll(t, s, nodes...)
	probeTwice(t, s)
	nextEpoch(s, clock)
	top := s.Topology()
	if err := top.Routable(); err != nil {
		t.Fatal(err)
	}
	if r, _ := top.RoleOf(nodes[0].id()); r != directory.RoleEntry {
		t.Fatalf("entry-only node has role %s", r)
	}
	if r, _ := top.RoleOf(nodes[1].id()); r != directory.RoleExit {
		t.Fatalf("exit-only node has role %s", r)
	}
	var standby *testNode
	var victim *testNode
	layers := map[*testNode]int{}
	for _, n := range nodes[2:] {
		layers[n] = layerOf(top, n.id())
		if r, _ := top.RoleOf(n.id()); r == directory.RoleStandby {
			standby = n
		} else if layers[n] == 2 {
			victim = n
		}
	}
	if standby == nil || victim == nil {
		t.Fatalf("expected one standby and a layer-2 mix, got layers %v", layers)
	}

	victim.healthy.Store(false)
	probeTwice(t, s)
	if layerOf(s.Topology(), victim.id()) != 2 {
		t.Fatal("the dead node lost its role before the epoch ended")
	}
	nextEpoch(s, clock)
	top = s.Topology()
	if r, _ := top.RoleOf(victim.id()); r != directory.RoleNone {
		t.Fatalf("dead node still in the topology as %s", r)
	}
	if got := layerOf(top, standby.id()); got != 2 {
		t.Fatalf("standby node is in layer %d, want 2 (the dead node's)", got)
	}
	for n, l := range layers {
		if n != victim && n != standby && layerOf(top, n.id()) != l {
			t.Errorf("healthy node moved from layer %d to %d", l, layerOf(top, n.id()))
		}
	}

	// Back up: it returns, on standby since the layers are full.
	victim.healthy.Store(true)
	s.probeRound(context.Background(), nil)
	nextEpoch(s, clock)
	if r, _ := s.Topology().RoleOf(victim.id()); r != directory.RoleStandby {
		t.Fatalf("recovered node has role %s, want standby", r)
	}
}

func TestStaleDescriptorDropsOut(t *testing.T) {
	s, clock := newTestServer(t, Config{DescriptorTTL: 90 * time.Second})
	nodes := network(t)
	registerAll(t, s, nodes...)
	probeTwice(t, s)
	nextEpoch(s, clock) // t ≈ 1 min
	if err := s.Topology().Routable(); err != nil {
		t.Fatal(err)
	}
	registerAll(t, s, nodes[1:]...) // everyone but the entry refreshes
	nextEpoch(s, clock)             // t ≈ 2 min: the entry's descriptor is 2 min old
	if r, _ := s.Topology().RoleOf(nodes[0].id()); r != directory.RoleNone {
		t.Fatalf("node that stopped refreshing has role %s", r)
	}
	if r, _ := s.Topology().RoleOf(nodes[1].id()); r != directory.RoleExit {
		t.Fatalf("refreshed node has role %s", r)
	}
}

// TestEmptyLayerFilledFromCapableNode: when a layer's only node dies and no
// standby exists, a node from an over-full layer moves in.
func TestEmptyLayerFilledFromCapableNode(t *testing.T) {
	s, clock := newTestServer(t, Config{})
	nodes := append(network(t), newTestNode(t, mixOnly)) // 5 mixes: 2/2/1 or similar
	registerAll(t, s, nodes...)
	probeTwice(t, s)
	nextEpoch(s, clock)
	top := s.Topology()
	var lonely *testNode
	for _, n := range nodes[2:] {
		if l := layerOf(top, n.id()); l != 0 && len(top.Layers[l-1]) == 1 {
			lonely = n
		}
	}
	if lonely == nil {
		t.Fatalf("no layer with a single node: %d/%d/%d", len(top.Layers[0]), len(top.Layers[1]), len(top.Layers[2]))
	}
	layer := layerOf(top, lonely.id())
	lonely.healthy.Store(false)
	probeTwice(t, s)
	nextEpoch(s, clock)
	top = s.Topology()
	if err := top.Routable(); err != nil {
		t.Fatalf("layer %d left empty: %v", layer, err)
	}
	if r, _ := top.RoleOf(lonely.id()); r != directory.RoleNone {
		t.Fatalf("dead node has role %s", r)
	}
}

func TestNodeWithoutCurrentSphinxKeyGetsNoRole(t *testing.T) {
	s, clock := newTestServer(t, Config{RotationEpochs: 2})
	nodes := network(t)
	registerAll(t, s, nodes...)
	probeTwice(t, s)
	nextEpoch(s, clock) // epoch 1, rotation 0; epoch 2 starts rotation 1
	n := nodes[2]
	n.desc.SphinxKeys = n.desc.SphinxKeys[:1] // only rotation 0
	sd := n.signed(t, clock.Now())
	reg, status, err := s.register(n.desc, sd, clock.Now())
	if err != nil {
		t.Fatal(status, err)
	}
	if len(reg.Warnings) != 1 || !strings.Contains(reg.Warnings[0], "rotation 1") {
		t.Fatalf("warnings %q, want one about rotation 1", reg.Warnings)
	}
	nextEpoch(s, clock) // epoch 2, rotation 1
	if r, _ := s.Topology().RoleOf(n.id()); r != directory.RoleNone {
		t.Fatalf("node without a key for rotation 1 has role %s", r)
	}
	if err := s.Topology().Routable(); err != nil {
		t.Fatal(err) // the standby took its place
	}
}

// TestLateSphinxKeyFillsLayerAtOnce: a node slow to refresh across a
// rotation boundary (a loaded machine, a short rotation) misses the new
// rotation's key and its layer is left empty. When it announces the key, the
// layer is filled at once, not after the next probe round (by default a
// sixth of an epoch, ten minutes, with no client able to route meanwhile).
func TestLateSphinxKeyFillsLayerAtOnce(t *testing.T) {
	s, clock := newTestServer(t, Config{RotationEpochs: 1})
	nodes := []*testNode{newTestNode(t, entryGW), newTestNode(t, directory.Capabilities{Exit: true}),
		newTestNode(t, mixOnly), newTestNode(t, mixOnly), newTestNode(t, mixOnly)}
	registerAll(t, s, nodes...)
	probeTwice(t, s)
	nextEpoch(s, clock) // epoch 1, rotation 1
	if err := s.Topology().Routable(); err != nil {
		t.Fatal(err)
	}
	late := nodes[2]
	for _, n := range nodes {
		if n != late {
			n.desc.SphinxKeys = []directory.SphinxKey{{Rotation: 1, Key: newKey(t)}, {Rotation: 2, Key: newKey(t)}}
		}
	}
	clock.Advance(time.Second)
	registerAll(t, s, nodes[0], nodes[1], nodes[3], nodes[4])
	nextEpoch(s, clock) // epoch 2, rotation 2: late has keys for 0 and 1 only
	if r, _ := s.Topology().RoleOf(late.id()); r != directory.RoleNone {
		t.Fatalf("node without a key for rotation 2 has role %s", r)
	}
	if s.Topology().Routable() == nil {
		t.Fatal("three mixes for three layers, one without a key, and the topology routes")
	}
	late.desc.SphinxKeys = []directory.SphinxKey{{Rotation: 2, Key: newKey(t)}, {Rotation: 3, Key: newKey(t)}}
	clock.Advance(time.Second)
	registerAll(t, s, late)
	top := s.Topology()
	if err := top.Routable(); err != nil {
		t.Fatalf("after the late key, with no probe round: %v", err)
	}
	if top.Epoch != 2 {
		t.Fatalf("epoch %d, want 2", top.Epoch)
	}
}

func TestDescriptorChangeRepublishedWithinEpoch(t *testing.T) {
	s, clock := newTestServer(t, Config{})
	nodes := network(t)
	registerAll(t, s, nodes...)
	probeTwice(t, s)
	nextEpoch(s, clock)
	before := s.Topology()
	exit := nodes[1]
	exit.desc.NoiseKey = newKey(t)
	clock.Advance(time.Second)
	registerAll(t, s, exit)
	after := s.Topology()
	if after.Epoch != before.Epoch {
		t.Fatalf("epoch changed %d → %d", before.Epoch, after.Epoch)
	}
	got, _ := after.NodeByIdentity(exit.id())
	if got.NoiseKey != exit.desc.NoiseKey {
		t.Fatal("new noise key not published within the epoch")
	}
	// A plain refresh does not reissue the document.
	clock.Advance(time.Second)
	registerAll(t, s, nodes[0])
	if s.Topology() != after {
		t.Fatal("refresh without changes reissued the topology")
	}
}

func TestIncompleteTopologyFilledWithinEpoch(t *testing.T) {
	s, _ := newTestServer(t, Config{})
	if s.Topology().Routable() == nil {
		t.Fatal("empty directory claims a routable topology")
	}
	registerAll(t, s, network(t)...)
	s.probeRound(context.Background(), nil)
	top := s.Topology()
	if top.Epoch != 0 {
		t.Fatalf("epoch %d, want still 0", top.Epoch)
	}
	if err := top.Routable(); err != nil {
		t.Fatalf("a starting network still waits for the next epoch: %v", err)
	}
}

// TestStateSurvivesRestart: the same key, genesis, epoch numbering and
// assignment after reopening the data dir.
func TestStateSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	clock := newFakeClock()
	cfg := Config{DataDir: dir, Now: clock.Now, EpochLength: time.Minute, Limits: Limits{LayerSize: 1}}
	s1, _ := newTestServer(t, cfg)
	nodes := network(t)
	registerAll(t, s1, nodes...)
	probeTwice(t, s1)
	nextEpoch(s1, clock)
	nextEpoch(s1, clock)
	clock.Advance(10 * time.Second)
	top1 := s1.Topology()
	pub1 := s1.PublicKey()
	genesis1 := s1.clock.Genesis
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}

	s2, _ := newTestServer(t, cfg)
	top2 := s2.Topology()
	if !bytes.Equal(s2.PublicKey(), pub1) {
		t.Fatal("directory key changed across restart")
	}
	if !s2.clock.Genesis.Equal(genesis1) {
		t.Fatalf("genesis %s → %s", genesis1, s2.clock.Genesis)
	}
	if top2.Epoch != top1.Epoch || top2.Epoch != 2 {
		t.Fatalf("epoch %d → %d, want 2", top1.Epoch, top2.Epoch)
	}
	if err := top2.Routable(); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		r1, l1 := top1.RoleOf(n.id())
		r2, l2 := top2.RoleOf(n.id())
		if r1 != r2 || l1 != l2 {
			t.Errorf("node role %s/%d → %s/%d across restart", r1, l1, r2, l2)
		}
	}
	// The next epoch after the restart keeps the roles too.
	nextEpoch(s2, clock)
	for _, n := range nodes {
		r1, l1 := top1.RoleOf(n.id())
		r3, l3 := s2.Topology().RoleOf(n.id())
		if r1 != r3 || l1 != l3 {
			t.Errorf("node role %s/%d → %s/%d in the epoch after restart", r1, l1, r3, l3)
		}
	}
	s2.Close()

	// A different epoch length would renumber epochs: refused.
	cfg.EpochLength = time.Hour
	cfg.Logger = testLogger(t)
	if _, err := NewServer(cfg); err == nil || !strings.Contains(err.Error(), "epoch length") {
		t.Fatalf("NewServer with another epoch length: %v", err)
	}
}

func TestSecondServerOnSameDataDirRefused(t *testing.T) {
	dir := t.TempDir()
	newTestServer(t, Config{DataDir: dir})
	_, err := NewServer(Config{DataDir: dir, Logger: testLogger(t)})
	if err == nil || !strings.Contains(err.Error(), "another nym-api") {
		t.Fatalf("second server: %v", err)
	}
}

func TestSigningKeyFilePermissions(t *testing.T) {
	dir := t.TempDir()
	priv, created, err := LoadOrCreateSigningKey(dir)
	if err != nil || !created {
		t.Fatalf("create: %v %v", created, err)
	}
	path := filepath.Join(dir, SigningKeyFile)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("new key file has mode %#o, want 0600", fi.Mode().Perm())
	}
	again, created, err := LoadOrCreateSigningKey(dir)
	if err != nil || created || !priv.Equal(again) {
		t.Fatalf("reload: created=%v err=%v same=%v", created, err, priv.Equal(again))
	}
	for _, mode := range []os.FileMode{0o640, 0o604, 0o644} {
		os.Chmod(path, mode)
		_, err := LoadSigningKey(dir)
		if err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("mode %#o: %v, want refusal", mode, err)
		}
		if _, err := NewServer(Config{DataDir: dir, Logger: testLogger(t)}); err == nil {
			t.Errorf("server started with key file mode %#o", mode)
		}
	}
	os.Chmod(path, 0o600)
	if _, err := LoadSigningKey(dir); err != nil {
		t.Fatal(err)
	}

	empty := t.TempDir()
	if _, err := LoadSigningKey(empty); !errors.Is(err, ErrNoSigningKey) || !strings.Contains(err.Error(), "nym-api init") {
		t.Fatalf("missing key: %v", err)
	}
	os.WriteFile(filepath.Join(empty, SigningKeyFile), []byte("not a key"), 0o600)
	if _, err := LoadSigningKey(empty); err == nil {
		t.Fatal("garbage key file accepted")
	}
}

// TestClientAgainstRunningServer runs the real loops with 400 ms epochs and
// fetches through Client: nodes join, a dead one leaves, and a client
// pinning another key refuses the topology.
func TestClientAgainstRunningServer(t *testing.T) {
	cfg := Config{
		DataDir:       t.TempDir(),
		EpochLength:   400 * time.Millisecond,
		ProbeInterval: 50 * time.Millisecond,
		ProbeTimeout:  2 * time.Second, // a Noise handshake under -race takes more than 50 ms
		Logger:        testLogger(t),
		Limits:        Limits{LayerSize: 1},
		Admission:     Admission{MaxSeatsPerAddress: -1, MaxSeatsPerPrefix: -1}, // every node is on 127.0.0.1
	}
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ts := httptest.NewServer(s)
	defer ts.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	client := &directory.Client{BaseURL: ts.URL, Key: s.PublicKey(), HTTP: &http.Client{Timeout: 5 * time.Second}}
	nodes := network(t)
	registerLoop := func(ns []*testNode) {
		for _, n := range ns {
			if err := client.Register(ctx, n.signed(t, time.Now())); err != nil {
				t.Fatalf("Register: %v", err)
			}
		}
	}
	registerLoop(nodes)

	// Poll until the topology lists everyone.
	waitFor := func(what string, cond func(*directory.Topology) bool) *directory.Topology {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			top, err := client.Topology(ctx)
			if err != nil {
				t.Fatalf("Topology: %v", err)
			}
			if cond(top) {
				return top
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; last epoch %d: %v", what, top.Epoch, top.Routable())
			}
			registerLoop(nodes) // keep descriptors fresh, as nodes do
			time.Sleep(20 * time.Millisecond)
		}
	}
	top := waitFor("a routable topology", func(t *directory.Topology) bool { return t.Routable() == nil })
	var victim *testNode
	for _, n := range nodes[2:] {
		if layerOf(top, n.id()) == 1 {
			victim = n
		}
	}
	victim.healthy.Store(false)
	start := top.Epoch
	top = waitFor("the dead node to leave", func(t *directory.Topology) bool {
		r, _ := t.RoleOf(victim.id())
		return r == directory.RoleNone && t.Epoch > start
	})
	if err := top.Routable(); err != nil {
		t.Fatalf("after the dead node left: %v", err)
	}

	// A client that pinned another directory key refuses this topology.
	strangerKey, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	stranger := &directory.Client{BaseURL: ts.URL, Key: strangerKey}
	if _, err := stranger.Topology(ctx); !errors.Is(err, directory.ErrUntrustedDirectory) {
		t.Fatalf("client with another pinned key: %v", err)
	}
	// Registration errors carry the directory's explanation.
	bad := nodes[0].signed(t, time.Now().Add(-time.Hour))
	err = client.Register(ctx, bad)
	var se *directory.StatusError
	if !errors.As(err, &se) || se.StatusCode != 400 || !strings.Contains(err.Error(), "clock") {
		t.Fatalf("Register(stale) = %v", err)
	}
	// /identity tells the key; /health answers.
	var id directory.IdentityResponse
	resp, err := http.Get(ts.URL + directory.PathIdentity)
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&id)
	resp.Body.Close()
	if !bytes.Equal(id.Key[:], s.PublicKey()) {
		t.Fatalf("identity endpoint says %s", id.Key)
	}
	var health directory.HealthResponse
	resp, err = http.Get(ts.URL + directory.PathHealth)
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&health)
	resp.Body.Close()
	if resp.StatusCode != 200 || health.Status != "ok" || health.Nodes != len(nodes) {
		t.Fatalf("health: %d %+v", resp.StatusCode, health)
	}
}
