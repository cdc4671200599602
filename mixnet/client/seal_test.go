package client

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"testing"
)

func TestSealRoundTrip(t *testing.T) {
	priv, _ := ecdh.X25519().GenerateKey(rand.Reader)
	msg := []byte("attack at dawn")
	sealed, err := seal([]byte("prefix"), priv.PublicKey(), msg)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(sealed, []byte("prefix")) || len(sealed) != 6+len(msg)+SealOverhead {
		t.Fatalf("sealed is %d bytes", len(sealed))
	}
	if bytes.Contains(sealed, msg) {
		t.Fatal("plaintext visible in the sealed body")
	}
	got, err := open(priv, sealed[6:])
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("open: %q, %v", got, err)
	}
	// Sealing twice gives different bodies (fresh ephemeral key).
	again, _ := seal(nil, priv.PublicKey(), msg)
	if bytes.Equal(again, sealed[6:]) {
		t.Fatal("two seals of one message are equal")
	}
}

func TestSealTamper(t *testing.T) {
	priv, _ := ecdh.X25519().GenerateKey(rand.Reader)
	other, _ := ecdh.X25519().GenerateKey(rand.Reader)
	sealed, _ := seal(nil, priv.PublicKey(), make([]byte, 100))
	for i := 0; i < len(sealed); i += 7 {
		b := bytes.Clone(sealed)
		b[i] ^= 0x20
		if _, err := open(priv, b); !errors.Is(err, ErrOpen) {
			t.Fatalf("flipping byte %d went unnoticed: %v", i, err)
		}
	}
	if _, err := open(other, sealed); !errors.Is(err, ErrOpen) {
		t.Fatalf("opened with the wrong key: %v", err)
	}
	if _, err := open(priv, sealed[:SealOverhead-1]); !errors.Is(err, ErrOpen) {
		t.Fatalf("short body: %v", err)
	}
	low := bytes.Clone(sealed)
	clear(low[:32]) // the zero point: a low-order key
	if _, err := open(priv, low); !errors.Is(err, ErrOpen) {
		t.Fatalf("low-order key: %v", err)
	}
}

// The hand-made HKDF of sealing is crypto/hkdf's, for random inputs.
func TestSealKDF(t *testing.T) {
	var k sealKDF
	k.h = sha256.New()
	for range 100 {
		secret, eph, rcpt := randomBytes(32), randomBytes(32), randomBytes(32)
		want, err := hkdf.Key(sha256.New, secret, append(bytes.Clone(eph), rcpt...), sealInfo, 32)
		if err != nil {
			t.Fatal(err)
		}
		if got := k.key(secret, eph, rcpt); !bytes.Equal(got[:], want) {
			t.Fatalf("key %x, crypto/hkdf %x", got, want)
		}
	}
}
