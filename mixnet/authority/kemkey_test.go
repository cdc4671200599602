package authority

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/link"
	"testing"
	"time"
)

// rotationKEMKeys gives a node fresh KEM keys for the rotations its Sphinx
// keys name, as a node announces them, and puts them in its link
// listener's keyring, as a node does.
func rotationKEMKeys(t testing.TB, n *testNode) []directory.RotationKEMKey {
	var keys []directory.RotationKEMKey
	for _, sk := range n.desc.SphinxKeys {
		k, err := link.GenerateKEMKey()
		if err != nil {
			t.Fatal(err)
		}
		n.noise.KEMKeys.Add(k)
		keys = append(keys, directory.RotationKEMKey{Rotation: sk.Rotation, Key: directory.KEMKey(k.PublicKey())})
	}
	return keys
}

// TestKEMKeyTravels: a node's ML-KEM keys, this rotation's and the next
// one's, and its RequiresPQ bit are signed in its descriptor and reach
// clients through the signed topology.
func TestKEMKeyTravels(t *testing.T) {
	s, clock := newTestServer(t, Config{Limits: Limits{LayerSize: 1}})
	nodes := network(t)
	kems := rotationKEMKeys(t, nodes[0])
	if len(kems) != 2 {
		t.Fatalf("test node announces %d rotations, want 2", len(kems))
	}
	nodes[0].desc.KEMKeys = kems
	nodes[0].desc.RequiresPQ = true
	got, err := nodes[0].signed(t, time.Now()).Verify()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range kems {
		if g, ok := got.KEMKeyFor(k.Rotation); !ok || !bytes.Equal(g, k.Key) {
			t.Fatalf("descriptor lost its KEM key for rotation %d", k.Rotation)
		}
	}
	if !got.RequiresPQ {
		t.Fatal("descriptor lost RequiresPQ")
	}
	registerAll(t, s, nodes...)
	probeTwice(t, s)
	nextEpoch(s, clock)
	dirPub, dirPriv, _ := ed25519.GenerateKey(rand.Reader)
	top := s.Topology()
	top.DirectoryKey = directory.Key(dirPub)
	st, err := directory.SignTopology(dirPriv, top)
	if err != nil {
		t.Fatal(err)
	}
	verified, err := st.Verify(dirPub)
	if err != nil {
		t.Fatal(err)
	}
	n, ok := verified.NodeByIdentity(nodes[0].id())
	if !ok || !n.RequiresPQ || len(n.KEMKeys) != len(kems) {
		t.Fatal("topology lost the node's KEM keys or RequiresPQ")
	}
	for _, k := range kems {
		if g, ok := n.KEMKeyFor(k.Rotation); !ok || !bytes.Equal(g, k.Key) {
			t.Fatalf("topology lost the node's KEM key for rotation %d", k.Rotation)
		}
	}
	if n, _ := verified.NodeByIdentity(nodes[1].id()); n.KEMKeys != nil || n.RequiresPQ {
		t.Fatal("a node without a KEM key got one in the topology")
	}
}
