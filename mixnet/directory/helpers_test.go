package directory

import (
	"crypto/ed25519"
	"crypto/rand"
	"testing"
	"time"
)

// testNode is a fake node: its identity key and a descriptor.
type testNode struct {
	priv ed25519.PrivateKey
	desc Descriptor
}

func newKey(t testing.TB) Key {
	t.Helper()
	var k Key
	if _, err := rand.Read(k[:]); err != nil {
		t.Fatal(err)
	}
	return k
}

// newTestNode makes a node offering caps, with Sphinx keys for rotations
// 0 and 1.
func newTestNode(t testing.TB, caps Capabilities) *testNode {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	n := &testNode{priv: priv}
	n.desc = Descriptor{
		Identity:     Key(pub),
		NoiseKey:     newKey(t),
		SphinxKeys:   []SphinxKey{{Rotation: 0, Key: newKey(t)}, {Rotation: 1, Key: newKey(t)}},
		MixnetAddr:   "127.0.0.1:1789",
		HTTPAddr:     "127.0.0.1:8080",
		Capabilities: caps,
		Version:      "test-1.0",
		IssuedAt:     time.Now().UTC(),
	}
	if caps.Gateway() {
		n.desc.ClientsAddr = "127.0.0.1:9000"
	}
	return n
}

// signed returns the node's descriptor, issued at issuedAt, signed.
func (n *testNode) signed(t testing.TB, issuedAt time.Time) SignedDescriptor {
	t.Helper()
	d := n.desc
	d.IssuedAt = issuedAt
	sd, err := SignDescriptor(n.priv, d)
	if err != nil {
		t.Fatal(err)
	}
	return sd
}

func (n *testNode) id() Key { return n.desc.Identity }

var (
	mixOnly  = Capabilities{Mixnode: true}
	entryGW  = Capabilities{Entry: true}
	exitGW   = Capabilities{Entry: true, Exit: true}
	autoNode = Capabilities{Mixnode: true, Entry: true, Exit: true}
)
