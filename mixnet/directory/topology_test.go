package directory

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func newDirectoryKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return priv
}

// testTopology builds a small complete topology from fresh nodes.
func testTopology(t testing.TB) (*Topology, []*testNode) {
	t.Helper()
	nodes := []*testNode{
		newTestNode(t, entryGW), newTestNode(t, exitGW),
		newTestNode(t, mixOnly), newTestNode(t, mixOnly), newTestNode(t, mixOnly),
		newTestNode(t, autoNode),
	}
	as := func(i int) Node {
		return nodes[i].desc.Node(0.5)
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	top := &Topology{
		Epoch: 30, EpochStart: start, EpochEnd: start.Add(time.Hour), EpochLength: time.Hour,
		Rotation: 1, RotationEpochs: 24, IssuedAt: start,
		Entry: []Node{as(0)}, Exit: []Node{as(1)},
		Layers:  [3][]Node{{as(2)}, {as(3)}, {as(4)}},
		Standby: []Node{as(5)},
	}
	return top, nodes
}

func TestTopologySignVerifyRoundTrip(t *testing.T) {
	dir := newDirectoryKey(t)
	top, nodes := testTopology(t)
	st, err := SignTopology(dir, top)
	if err != nil {
		t.Fatal(err)
	}
	wire, _ := json.Marshal(st)
	var back SignedTopology
	if err := json.Unmarshal(wire, &back); err != nil {
		t.Fatal(err)
	}
	got, err := back.Verify(dir.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if got.Epoch != 30 || got.Rotation != 1 || got.DirectoryKey != Key(dir.Public().(ed25519.PublicKey)) {
		t.Fatalf("got epoch %d rotation %d key %s", got.Epoch, got.Rotation, got.DirectoryKey)
	}
	if err := got.Routable(); err != nil {
		t.Fatalf("Routable: %v", err)
	}
	for i, want := range []struct {
		role  Role
		layer int
	}{{RoleEntry, 0}, {RoleExit, 0}, {RoleMix, 1}, {RoleMix, 2}, {RoleMix, 3}, {RoleStandby, 0}} {
		role, layer := got.RoleOf(nodes[i].id())
		if role != want.role || layer != want.layer {
			t.Errorf("node %d: RoleOf = %s/%d, want %s/%d", i, role, layer, want.role, want.layer)
		}
		n, ok := got.NodeByIdentity(nodes[i].id())
		if !ok || n.NoiseKey != nodes[i].desc.NoiseKey || n.Performance != 0.5 {
			t.Errorf("node %d: NodeByIdentity = %+v, %v", i, n, ok)
		}
		if k, ok := got.SphinxKeyFor(nodes[i].id(), 1); !ok || k != nodes[i].desc.SphinxKeys[1].Key {
			t.Errorf("node %d: SphinxKeyFor(1) = %s, %v", i, k, ok)
		}
		if _, ok := got.SphinxKeyFor(nodes[i].id(), 2); ok {
			t.Errorf("node %d: SphinxKeyFor(2) found a key that was never announced", i)
		}
	}
	stranger := newKey(t)
	if role, _ := got.RoleOf(stranger); role != RoleNone {
		t.Errorf("RoleOf(stranger) = %s", role)
	}
	if _, ok := got.NodeByIdentity(stranger); ok {
		t.Error("NodeByIdentity(stranger) found a node")
	}
	// A topology built by hand (no index) answers the same.
	if role, layer := top.RoleOf(nodes[3].id()); role != RoleMix || layer != 2 {
		t.Errorf("unindexed RoleOf = %s/%d", role, layer)
	}
}

func TestTopologyFromAnotherDirectoryRefused(t *testing.T) {
	pinned, impostor := newDirectoryKey(t), newDirectoryKey(t)
	top, _ := testTopology(t)
	st, err := SignTopology(impostor, top)
	if err != nil {
		t.Fatal(err)
	}
	_, err = st.Verify(pinned.Public().(ed25519.PublicKey))
	if !errors.Is(err, ErrUntrustedDirectory) {
		t.Fatalf("Verify = %v, want ErrUntrustedDirectory", err)
	}
	// The error names both keys, so an operator sees which directory it met.
	for _, k := range []ed25519.PrivateKey{pinned, impostor} {
		if s := Key(k.Public().(ed25519.PublicKey)).String(); !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not name key %s", err, s)
		}
	}

	// An impostor claiming to be the pinned directory fails the signature.
	top.DirectoryKey = Key(pinned.Public().(ed25519.PublicKey))
	raw, _ := json.Marshal(top)
	forged := SignedTopology{Topology: raw, Signature: ed25519.Sign(impostor, signedMessage(topologyDomain, raw))}
	if _, err := forged.Verify(pinned.Public().(ed25519.PublicKey)); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("forged Verify = %v, want ErrBadSignature", err)
	}
}

func TestTopologyTamperingRejected(t *testing.T) {
	dir := newDirectoryKey(t)
	pub := dir.Public().(ed25519.PublicKey)
	top, nodes := testTopology(t)
	st, err := SignTopology(dir, top)
	if err != nil {
		t.Fatal(err)
	}
	for name, tamper := range map[string]func(*SignedTopology){
		"epoch": func(s *SignedTopology) {
			s.Topology = bytes.Replace(s.Topology, []byte(`"epoch":30`), []byte(`"epoch":31`), 1)
		},
		"swap a node": func(s *SignedTopology) {
			s.Topology = bytes.Replace(s.Topology, []byte(nodes[2].id().String()), []byte(nodes[3].id().String()), 1)
		},
		"signature":      func(s *SignedTopology) { s.Signature[0] ^= 0x80 },
		"descriptor sig": func(s *SignedTopology) { s.Signature = ed25519.Sign(dir, signedMessage(descriptorDomain, s.Topology)) },
		"truncated":      func(s *SignedTopology) { s.Topology = s.Topology[:len(s.Topology)/2] },
		"short sig":      func(s *SignedTopology) { s.Signature = s.Signature[:10] },
	} {
		t.Run(name, func(t *testing.T) {
			c := SignedTopology{Topology: bytes.Clone(st.Topology), Signature: bytes.Clone(st.Signature)}
			tamper(&c)
			if _, err := c.Verify(pub); err == nil {
				t.Fatal("tampered topology verified")
			}
		})
	}
}

// TestTopologyInconsistentRefused: even correctly signed, a topology a
// client could not use safely is refused (and SignTopology will not make it).
func TestTopologyInconsistentRefused(t *testing.T) {
	dir := newDirectoryKey(t)
	for name, c := range map[string]struct {
		mutate func(*Topology)
		want   string
	}{
		"node listed twice":       {func(t *Topology) { t.Layers[1] = append(t.Layers[1], t.Layers[0][0]) }, "twice"},
		"rotation mismatch":       {func(t *Topology) { t.Rotation = 2 }, "rotation"},
		"no rotation length":      {func(t *Topology) { t.RotationEpochs = 0 }, "rotation_epochs"},
		"epoch bounds":            {func(t *Topology) { t.EpochEnd = t.EpochStart }, "epoch"},
		"mix without current key": {func(t *Topology) { t.Layers[0][0].SphinxKeys = t.Layers[0][0].SphinxKeys[:1] }, "rotation 1"},
		"mix-only node as entry": {func(t *Topology) {
			n := t.Layers[0][0]
			n.ClientsAddr = "127.0.0.1:9000"
			t.Entry, t.Layers[0] = append(t.Entry, n), nil
		}, "offers mixnode"},
		"performance above 1":       {func(t *Topology) { t.Exit[0].Performance = 1.5 }, "performance"},
		"gateway without clients":   {func(t *Topology) { t.Entry[0].ClientsAddr = "" }, "clients address"},
		"unparseable mixnet addres": {func(t *Topology) { t.Layers[2][0].MixnetAddr = "nope" }, "mixnet address"},
	} {
		t.Run(name, func(t *testing.T) {
			top, _ := testTopology(t)
			c.mutate(top)
			if _, err := SignTopology(dir, top); err == nil {
				t.Fatal("SignTopology signed an inconsistent topology")
			}
			top.DirectoryKey = Key(dir.Public().(ed25519.PublicKey))
			raw, _ := json.Marshal(top)
			st := SignedTopology{Topology: raw, Signature: ed25519.Sign(dir, signedMessage(topologyDomain, raw))}
			_, err := st.Verify(dir.Public().(ed25519.PublicKey))
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Verify = %v, want ErrInvalid mentioning %q", err, c.want)
			}
		})
	}
}

func TestTopologyRoutableNamesWhatIsMissing(t *testing.T) {
	top, _ := testTopology(t)
	top.Layers[1] = nil
	top.Exit = nil
	err := top.Routable()
	if err == nil || !strings.Contains(err.Error(), "mix layer 2") || !strings.Contains(err.Error(), "exit") {
		t.Fatalf("Routable = %v", err)
	}
}
