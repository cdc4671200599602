package link

import (
	"crypto/ecdh"
	"crypto/rand"
	"fmt"
	"io"
)

// KeyPair is a static X25519 key pair: a node's Noise key or a client's
// identity key.
type KeyPair struct {
	Private [32]byte
	Public  [32]byte

	// KEM, when set, is an ML-KEM-768 key with which a responder accepts
	// hybrid (post-quantum) handshakes; its public half is published next
	// to Public. Clients, which only dial, leave it nil. See pq.go.
	KEM *KEMKey
	// KEMKeys, when set, are more such keys, replaced as they rotate while
	// the responder serves: a node's keys of the current, the next and,
	// during the overlap, the previous rotation. Message 1 names the one
	// it used. KeyPair values share the ring.
	KEMKeys *KEMKeyring
	// RequirePQ makes this side refuse classical handshakes: a responder
	// turns away initiators that do not encapsulate to KEM, an initiator
	// does not dial peers that publish no KEM key.
	RequirePQ bool
}

// GenerateKeyPair makes a fresh key pair from r, or from crypto/rand when r is
// nil.
func GenerateKeyPair(r io.Reader) (KeyPair, error) {
	if r == nil {
		r = rand.Reader
	}
	var priv [32]byte
	if _, err := io.ReadFull(r, priv[:]); err != nil {
		return KeyPair{}, fmt.Errorf("link: reading random key: %w", err)
	}
	return KeyPairFromPrivate(priv)
}

// KeyPairFromPrivate derives the public half of an X25519 private key.
func KeyPairFromPrivate(priv [32]byte) (KeyPair, error) {
	k, err := ecdh.X25519().NewPrivateKey(priv[:])
	if err != nil {
		return KeyPair{}, fmt.Errorf("link: bad X25519 private key: %w", err)
	}
	kp := KeyPair{Private: priv}
	copy(kp.Public[:], k.PublicKey().Bytes())
	return kp, nil
}

func (k KeyPair) isZero() bool { return k.Public == [32]byte{} }
