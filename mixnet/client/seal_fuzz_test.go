package client

import (
	"bytes"
	"crypto/ecdh"
	"testing"
)

// Fixed keys, so the fuzzer's inputs mean the same thing run after run.
var (
	fuzzSealKey, _  = ecdh.X25519().NewPrivateKey(bytes.Repeat([]byte{7}, 32))
	fuzzOtherKey, _ = ecdh.X25519().NewPrivateKey(bytes.Repeat([]byte{8}, 32))
)

// FuzzOpen feeds arbitrary bodies to open, as a gateway's stored message or
// a forged packet would reach it: it must never panic, and a body that was
// not sealed to the key does not open. (Forging one that does is as hard as
// breaking AES-GCM; the fuzzer only shows open fails closed.)
func FuzzOpen(f *testing.F) {
	for _, pt := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte{0xAA}, 200)} {
		sealed, err := seal(nil, fuzzSealKey.PublicKey(), pt)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(sealed)
	}
	f.Add(make([]byte, SealOverhead))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, sealed []byte) {
		in := bytes.Clone(sealed)
		pt, err := open(fuzzSealKey, sealed)
		if !bytes.Equal(in, sealed) {
			t.Fatal("open changed its input")
		}
		if err != nil {
			return
		}
		if len(pt) != len(sealed)-SealOverhead {
			t.Fatalf("%d-byte body opened to %d bytes", len(sealed), len(pt))
		}
		if _, err := open(fuzzOtherKey, sealed); err == nil {
			t.Fatal("a body opened under two keys")
		}
	})
}

// FuzzSealRoundTrip seals a plaintext and changes one bit of the result:
// intact it opens to the plaintext for the recipient only; changed anywhere
// it does not open at all.
func FuzzSealRoundTrip(f *testing.F) {
	f.Add([]byte("hello"), uint16(0))
	f.Add([]byte{}, uint16(40))
	f.Add(bytes.Repeat([]byte{1}, 1000), uint16(500))
	f.Fuzz(func(t *testing.T, pt []byte, flip uint16) {
		prefix := []byte("dst")
		sealed, err := seal(bytes.Clone(prefix), fuzzSealKey.PublicKey(), pt)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(sealed, prefix) || len(sealed) != len(prefix)+len(pt)+SealOverhead {
			t.Fatalf("seal of %d bytes gave %d bytes after the prefix", len(pt), len(sealed)-len(prefix))
		}
		body := sealed[len(prefix):]
		got, err := open(fuzzSealKey, body)
		if err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("round trip: %x, %v", got, err)
		}
		if _, err := open(fuzzOtherKey, body); err == nil {
			t.Fatal("opened by a key it was not sealed to")
		}
		bit := int(flip) % (len(body) * 8)
		body[bit/8] ^= 1 << (bit % 8)
		if got, err := open(fuzzSealKey, body); err == nil {
			t.Fatalf("bit %d flipped, still opened (to %x)", bit, got)
		}
	})
}
