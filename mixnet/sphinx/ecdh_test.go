package sphinx

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"testing"
)

// A key from Generate agrees with crypto/ecdh on its public key and on
// every shared secret.
func TestGenerateECDH(t *testing.T) {
	for range 20 {
		var k PrivateKey
		k.Generate()
		ref, err := ecdh.X25519().NewPrivateKey(k.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if pub := k.PublicKey(); !bytes.Equal(pub[:], ref.PublicKey().Bytes()) {
			t.Fatal("public key differs from crypto/ecdh")
		}
		peer, _ := ecdh.X25519().GenerateKey(rand.Reader)
		want, _ := ref.ECDH(peer.PublicKey())
		var got [32]byte
		if err := k.ECDH(&got, (*[32]byte)(peer.PublicKey().Bytes())); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got[:], want) {
			t.Fatalf("ECDH %x, crypto/ecdh %x", got, want)
		}
	}
	var out, low [32]byte // 0 is a low-order point
	if err := GenerateKey().ECDH(&out, &low); !errors.Is(err, ErrBadPoint) {
		t.Fatalf("low-order peer: %v", err)
	}
}
