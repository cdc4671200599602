package link

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/flynn/noise"
)

// errNonceExhausted ends a connection that has used every nonce of its key;
// at one message per nanosecond that takes five centuries.
var errNonceExhausted = errors.New("link: transport nonces exhausted")

// transportCipher is one direction of a Noise transport session: AES-256-GCM
// with the nonce Noise prescribes (4 zero bytes, then a 64-bit big-endian
// counter). It replaces noise.CipherState after the handshake because that
// allocates a nonce for every message, and a link seals tens of thousands of
// messages a second.
type transportCipher struct {
	aead  cipher.AEAD
	n     uint64
	nonce [12]byte
}

// newTransportCipher takes over the key of a CipherState fresh from Split.
func newTransportCipher(cs *noise.CipherState) (*transportCipher, error) {
	if cs.Nonce() != 0 {
		return nil, fmt.Errorf("link: cipher state already used (nonce %d)", cs.Nonce())
	}
	k := cs.UnsafeKey()
	block, err := aes.NewCipher(k[:])
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &transportCipher{aead: aead}, nil
}

// next returns the nonce for the next message and advances the counter.
// Noise reserves the last counter value (2^64-1) for rekeying.
func (t *transportCipher) next() ([]byte, error) {
	if t.n == math.MaxUint64 {
		return nil, errNonceExhausted
	}
	binary.BigEndian.PutUint64(t.nonce[4:], t.n)
	t.n++
	return t.nonce[:], nil
}

// seal appends the sealed plaintext to out; like cipher.AEAD.Seal, out may
// be plaintext[:0] to seal in place.
func (t *transportCipher) seal(out, plaintext []byte) ([]byte, error) {
	nonce, err := t.next()
	if err != nil {
		return nil, err
	}
	return t.aead.Seal(out, nonce, plaintext, nil), nil
}

// open authenticates and decrypts ciphertext, appending to out, which may be
// ciphertext[:0]. A failed open still uses up the nonce: the connection is
// closed anyway.
func (t *transportCipher) open(out, ciphertext []byte) ([]byte, error) {
	nonce, err := t.next()
	if err != nil {
		return nil, err
	}
	return t.aead.Open(out, nonce, ciphertext, nil)
}
