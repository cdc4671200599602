package directory

import (
	"bytes"
	"crypto/ed25519"
	"crypto/mlkem"
	"encoding/json"
	"testing"
	"time"
)

// Fixed keys, so the fuzzer can keep signatures valid while it mutates what
// sits behind them.
var (
	fuzzNodeKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))
	fuzzDirKey  = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, 32))
)

func fuzzDescriptor() Descriptor {
	return Descriptor{
		Identity:     Key(fuzzNodeKey.Public().(ed25519.PublicKey)),
		NoiseKey:     Key{3},
		SphinxKeys:   []SphinxKey{{Rotation: 4, Key: Key{4}}, {Rotation: 5, Key: Key{5}}},
		MixnetAddr:   "192.0.2.1:1789",
		ClientsAddr:  "node.example:9000",
		HTTPAddr:     "[2001:db8::1]:8080",
		Capabilities: autoNode,
		Version:      "1.0",
		IssuedAt:     time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
	}
}

// fuzzKEMKeys are fixed KEM keys for the rotations of fuzzDescriptor's
// Sphinx keys.
func fuzzKEMKeys() []RotationKEMKey {
	var keys []RotationKEMKey
	for _, sk := range fuzzDescriptor().SphinxKeys {
		dk, err := mlkem.NewDecapsulationKey768(bytes.Repeat([]byte{byte(sk.Rotation)}, mlkem.SeedSize))
		if err != nil {
			panic(err)
		}
		keys = append(keys, RotationKEMKey{Rotation: sk.Rotation, Key: dk.EncapsulationKey().Bytes()})
	}
	return keys
}

// FuzzVerifyDescriptor feeds arbitrary bytes to the descriptor verifier, both
// as a wire envelope and as the signed body (signed on the fly, so the field
// checks behind the signature are exercised too). It must never panic, and
// whatever it accepts must be sane.
//
// Signing costs more than everything else an input goes through, so a body
// is signed only once it decodes and validates, the checks Verify makes
// before the signature; the fuzzer then runs at the parser's speed.
func FuzzVerifyDescriptor(f *testing.F) {
	sd, err := SignDescriptor(fuzzNodeKey, fuzzDescriptor())
	if err != nil {
		f.Fatal(err)
	}
	envelope, _ := json.Marshal(sd)
	f.Add(envelope)
	f.Add([]byte(sd.Descriptor))
	pq := fuzzDescriptor()
	pq.KEMKeys, pq.RequiresPQ = fuzzKEMKeys(), true
	sd, err = SignDescriptor(fuzzNodeKey, pq)
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(sd.Descriptor))
	f.Add([]byte(`{"descriptor":null,"signature":""}`))
	f.Add([]byte(`{"identity":"` + Key{}.String() + `","sphinx_keys":[{"rotation":18446744073709551615}]}`))

	f.Fuzz(func(t *testing.T, data []byte) {
		var env SignedDescriptor
		if json.Unmarshal(data, &env) == nil {
			if d, err := env.Verify(); err == nil {
				checkAcceptedDescriptor(t, d)
			}
		}
		var body Descriptor
		if json.Unmarshal(data, &body) != nil || body.validate() != nil || len(data) > MaxDescriptorSize {
			return
		}
		signed := SignedDescriptor{Descriptor: data, Signature: ed25519.Sign(fuzzNodeKey, signedMessage(descriptorDomain, data))}
		if d, err := signed.Verify(); err == nil {
			checkAcceptedDescriptor(t, d)
			if d.Identity != Key(fuzzNodeKey.Public().(ed25519.PublicKey)) {
				t.Fatalf("accepted a descriptor of %s signed by another key", d.Identity)
			}
		}
	})
}

func checkAcceptedDescriptor(t *testing.T, d Descriptor) {
	t.Helper()
	if err := d.validate(); err != nil {
		t.Fatalf("accepted an invalid descriptor: %v", err)
	}
	if len(d.KEMKeys) > 2 || (d.RequiresPQ && len(d.KEMKeys) == 0) {
		t.Fatalf("accepted descriptor with %d KEM keys, requires_pq %v", len(d.KEMKeys), d.RequiresPQ)
	}
	if len(d.SphinxKeys) == 0 || len(d.SphinxKeys) > 2 || !d.Capabilities.Any() {
		t.Fatalf("accepted descriptor with %d sphinx keys, capabilities %s", len(d.SphinxKeys), d.Capabilities)
	}
	// What the verifier accepts must be something the node-side signer
	// would produce again.
	if d.Identity == Key(fuzzNodeKey.Public().(ed25519.PublicKey)) {
		if _, err := SignDescriptor(fuzzNodeKey, d); err != nil {
			t.Fatalf("accepted descriptor cannot be re-signed: %v", err)
		}
	}
}

// sampleTopology is a small valid topology: one entry, one layer-1 mix.
func sampleTopology() *Topology {
	d := fuzzDescriptor()
	node := d.Node(1)
	other := node
	other.Identity = Key{9}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	return &Topology{
		Epoch: 100, EpochStart: start, EpochEnd: start.Add(time.Hour), EpochLength: time.Hour,
		Rotation: 4, RotationEpochs: 24, IssuedAt: start,
		Entry: []Node{node}, Layers: [3][]Node{{other}}, Exit: []Node{}, Standby: []Node{},
	}
}

// FuzzVerifyTopology does the same for topologies, pinned to a fixed
// directory key. The body is judged by what Verify runs once the signature
// holds (decode, then check), without a signature per input; only bodies
// that pass are signed, and must pass Verify too.
func FuzzVerifyTopology(f *testing.F) {
	pub := fuzzDirKey.Public().(ed25519.PublicKey)
	st, err := SignTopology(fuzzDirKey, sampleTopology())
	if err != nil {
		f.Fatal(err)
	}
	envelope, _ := json.Marshal(st)
	f.Add(envelope)
	f.Add([]byte(st.Topology))
	f.Add([]byte(`{"topology":{},"signature":"AAAA"}`))
	f.Add([]byte(`{"rotation_epochs":0,"epoch":5,"layers":[[],[],[],[]]}`))

	f.Fuzz(func(t *testing.T, data []byte) {
		var env SignedTopology
		if json.Unmarshal(data, &env) == nil {
			if top, err := env.Verify(pub); err == nil {
				checkAcceptedTopology(t, top)
			}
		}
		top := new(Topology)
		if json.Unmarshal(data, top) != nil || top.check(Key(pub)) != nil {
			return
		}
		checkAcceptedTopology(t, top)
		if len(data) > MaxTopologySize {
			return
		}
		signed := SignedTopology{Topology: data, Signature: ed25519.Sign(fuzzDirKey, signedMessage(topologyDomain, data))}
		if _, err := signed.Verify(pub); err != nil {
			t.Fatalf("a body that passes the checks fails Verify once signed: %v", err)
		}
	})
}

func checkAcceptedTopology(t *testing.T, top *Topology) {
	t.Helper()
	if top.RotationEpochs == 0 || top.Rotation != top.Epoch/top.RotationEpochs {
		t.Fatalf("accepted rotation %d/%d at epoch %d", top.Rotation, top.RotationEpochs, top.Epoch)
	}
	_ = top.Routable()
	// Every listed node is found where it is listed, and routed nodes have a
	// key for the rotation in force.
	top.each(func(n *Node, ref nodeRef) bool {
		role, layer := top.RoleOf(n.Identity)
		if role != ref.role || layer != ref.layer {
			t.Fatalf("node %s listed as %s/%d but RoleOf says %s/%d", n.Identity, ref.role, ref.layer, role, layer)
		}
		if _, ok := top.SphinxKeyFor(n.Identity, top.Rotation); !ok && role != RoleStandby {
			t.Fatalf("routed node %s has no key for rotation %d", n.Identity, top.Rotation)
		}
		return true
	})
}
