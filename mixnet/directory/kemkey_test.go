package directory

import (
	"bytes"
	"crypto/ed25519"
	"crypto/mlkem"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func newKEMKey(t testing.TB) KEMKey {
	t.Helper()
	dk, err := mlkem.GenerateKey768()
	if err != nil {
		t.Fatal(err)
	}
	return KEMKey(dk.EncapsulationKey().Bytes())
}

// rotationKEMKeys gives a node fresh KEM keys for the rotations its Sphinx
// keys name, as a node announces them.
func rotationKEMKeys(t testing.TB, sphinx []SphinxKey) []RotationKEMKey {
	var keys []RotationKEMKey
	for _, sk := range sphinx {
		keys = append(keys, RotationKEMKey{Rotation: sk.Rotation, Key: newKEMKey(t)})
	}
	return keys
}

// TestKEMKeyChecks: a descriptor without a KEM key stays valid (a node
// from before post-quantum links); a malformed one, or RequiresPQ without a
// key, too many or non-consecutive rotations, is refused; a swapped key
// breaks the signature; a descriptor with every field at its longest, both
// rotations' KEM keys included, still fits MaxDescriptorSize.
func TestKEMKeyChecks(t *testing.T) {
	n := newTestNode(t, exitGW)
	if _, err := n.signed(t, time.Now()).Verify(); err != nil {
		t.Fatalf("descriptor without a KEM key refused: %v", err)
	}
	bad := map[string]func(*Descriptor){
		"short key":        func(d *Descriptor) { d.KEMKeys = []RotationKEMKey{{1, newKEMKey(t)[:100]}} },
		"long key":         func(d *Descriptor) { d.KEMKeys = []RotationKEMKey{{1, append(newKEMKey(t), 0)}} },
		"not a key":        func(d *Descriptor) { d.KEMKeys = []RotationKEMKey{{1, bytes.Repeat([]byte{0xff}, KEMKeySize)}} },
		"requires, no key": func(d *Descriptor) { d.RequiresPQ = true },
		"three keys": func(d *Descriptor) {
			d.KEMKeys = []RotationKEMKey{{1, newKEMKey(t)}, {2, newKEMKey(t)}, {3, newKEMKey(t)}}
		},
		"not consecutive": func(d *Descriptor) { d.KEMKeys = []RotationKEMKey{{1, newKEMKey(t)}, {3, newKEMKey(t)}} },
		"decreasing":      func(d *Descriptor) { d.KEMKeys = []RotationKEMKey{{2, newKEMKey(t)}, {1, newKEMKey(t)}} },
	}
	for name, mutate := range bad {
		d := n.desc
		mutate(&d)
		if _, err := SignDescriptor(n.priv, d); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: SignDescriptor = %v, want ErrInvalid", name, err)
		}
		raw, _ := json.Marshal(d)
		sd := SignedDescriptor{Descriptor: raw, Signature: ed25519.Sign(n.priv, signedMessage(descriptorDomain, raw))}
		if _, err := sd.Verify(); err == nil {
			t.Errorf("%s: Verify accepted it", name)
		}
	}

	n.desc.KEMKeys = rotationKEMKeys(t, n.desc.SphinxKeys)
	sd := n.signed(t, time.Now())
	var m map[string]any
	json.Unmarshal(sd.Descriptor, &m)
	other, _ := newKEMKey(t).MarshalText()
	m["kem_keys"].([]any)[0].(map[string]any)["key"] = string(other)
	sd.Descriptor, _ = json.Marshal(m)
	if _, err := sd.Verify(); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("swapped KEM key: Verify = %v, want ErrBadSignature", err)
	}

	long := strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 57) + ":65535"
	n.desc.MixnetAddr, n.desc.ClientsAddr, n.desc.HTTPAddr = long, long, long
	n.desc.Version = strings.Repeat("v", MaxVersionLength)
	rk := Key{1}
	n.desc.RouterKey = &rk
	n.desc.RequiresPQ = true
	if len(n.desc.KEMKeys) != 2 {
		t.Fatalf("largest descriptor has %d KEM keys, want 2", len(n.desc.KEMKeys))
	}
	largest, err := SignDescriptor(n.priv, n.desc)
	if err != nil {
		t.Fatalf("largest descriptor with KEM keys: %v", err)
	}
	if env, _ := json.Marshal(largest); len(env) > MaxSignedDescriptorSize {
		t.Fatalf("largest signed descriptor is %d bytes on the wire, limit %d", len(env), MaxSignedDescriptorSize)
	}
}

// FuzzKEMKeyText checks the KEM key's text decoder, which reads every
// descriptor a stranger registers: no panic, only KEMKeySize-byte keys
// accepted, and what it accepts re-encodes to the input.
func FuzzKEMKeyText(f *testing.F) {
	good, _ := newKEMKey(f).MarshalText()
	f.Add(good)
	f.Add(good[:len(good)-1])
	f.Add([]byte("AAAA"))
	f.Fuzz(func(t *testing.T, text []byte) {
		var k KEMKey
		if err := k.UnmarshalText(text); err != nil {
			return
		}
		if len(k) != KEMKeySize {
			t.Fatalf("accepted a %d-byte key", len(k))
		}
		if re, _ := k.MarshalText(); !bytes.Equal(re, text) {
			t.Fatal("key does not re-encode to its input")
		}
		validateKEM(k) // must not panic on any accepted bytes
	})
}
