package sphinx

import (
	"crypto/rand"
	"fmt"

	"filippo.io/edwards25519"
)

// PrivateKey is a node's Sphinx key: an X25519 scalar, clamped as RFC 7748
// asks, so public keys match crypto/ecdh's.
type PrivateKey struct {
	scalar [32]byte
	public [32]byte
}

// GenerateKey makes a new random Sphinx key.
func GenerateKey() *PrivateKey {
	var b [32]byte
	rand.Read(b[:])
	k, _ := NewPrivateKey(b[:]) // length is right, so it cannot fail
	return k
}

// NewPrivateKey wraps 32 bytes of X25519 private key.
func NewPrivateKey(b []byte) (*PrivateKey, error) {
	k := new(PrivateKey)
	if err := k.set(b); err != nil {
		return nil, err
	}
	return k, nil
}

// set makes k the key of the 32 bytes b.
func (k *PrivateKey) set(b []byte) error {
	if len(b) != 32 {
		return fmt.Errorf("%w: private key is %d bytes, want 32", ErrBadKey, len(b))
	}
	var s edwards25519.Scalar
	if _, err := s.SetBytesWithClamping(b); err != nil {
		return fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	k.public = baseMult(&s)
	copy(k.scalar[:], b)
	k.scalar[0] &= 248
	k.scalar[31] &= 127
	k.scalar[31] |= 64
	return nil
}

// Bytes returns the private key as given to NewPrivateKey, clamped.
func (k *PrivateKey) Bytes() []byte { return append([]byte(nil), k.scalar[:]...) }

// PublicKey is what the directory publishes for this node.
func (k *PrivateKey) PublicKey() [32]byte { return k.public }
