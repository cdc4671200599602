package client

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
)

// A forward packet's body is read by the recipient's gateway, so it is sealed
// to the recipient: a fresh X25519 key per packet, its shared secret with the
// recipient's identity key, HKDF-SHA256, AES-256-GCM. Each key seals one
// packet, so the nonce can be fixed. AES is used rather than ChaCha20-Poly1305
// because it is several times cheaper on the CPUs we run on.
//
//	eph     32  ephemeral X25519 public key
//	sealed   …  AES-256-GCM(plaintext), 16-byte tag at the end

// SealOverhead is what sealing adds to a plaintext.
const SealOverhead = 32 + 16

const sealInfo = "nym-go/client/seal/v1"

// ErrOpen is returned when a sealed body does not open: it was not made for
// us, or it was changed on the way.
var ErrOpen = errors.New("client: sealed body does not open")

var zeroNonce [12]byte

// seal appends the sealed form of plaintext, for the holder of recipient's
// private key, to dst.
func seal(dst []byte, recipient *ecdh.PublicKey, plaintext []byte) ([]byte, error) {
	n := len(dst)
	dst = slices.Grow(dst, SealOverhead+len(plaintext))[:n+SealOverhead+len(plaintext)]
	copy(dst[n+32:], plaintext)
	if err := sealInPlace(dst[n:], recipient); err != nil {
		return dst[:n], err
	}
	return dst, nil
}

// sealInPlace seals b = eph 32 ‖ plaintext ‖ 16 bytes for the tag, in place:
// it writes the ephemeral key in front and the tag behind, and the
// ciphertext exactly over the plaintext, as AEADs allow.
func sealInPlace(b []byte, recipient *ecdh.PublicKey) error {
	if len(b) < SealOverhead {
		return fmt.Errorf("seal: %d bytes, less than the overhead", len(b))
	}
	eph, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("seal: %w", err)
	}
	secret, err := eph.ECDH(recipient)
	if err != nil {
		return fmt.Errorf("seal: %w", err)
	}
	ephPub := eph.PublicKey().Bytes()
	aead, err := sealAEAD(secret, ephPub, recipient.Bytes())
	if err != nil {
		return err
	}
	copy(b, ephPub)
	pt := b[32 : len(b)-16]
	aead.Seal(pt[:0], zeroNonce[:], pt, nil)
	return nil
}

// open returns the plaintext of a sealed body made for priv. The result does
// not alias sealed.
func open(priv *ecdh.PrivateKey, sealed []byte) ([]byte, error) {
	if len(sealed) < SealOverhead {
		return nil, fmt.Errorf("%w: %d bytes", ErrOpen, len(sealed))
	}
	peer, err := ecdh.X25519().NewPublicKey(sealed[:32])
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrOpen, err)
	}
	secret, err := priv.ECDH(peer)
	if err != nil { // a low-order point: not made by an honest sender
		return nil, fmt.Errorf("%w: %v", ErrOpen, err)
	}
	aead, err := sealAEAD(secret, sealed[:32], priv.PublicKey().Bytes())
	if err != nil {
		return nil, err
	}
	pt, err := aead.Open(nil, zeroNonce[:], sealed[32:], nil)
	if err != nil {
		return nil, ErrOpen
	}
	return pt, nil
}

// sealAEAD derives the packet key. Both public keys go into the salt so the
// key is bound to this exchange and this recipient.
func sealAEAD(secret, ephPub, recipientPub []byte) (cipher.AEAD, error) {
	salt := make([]byte, 0, 64)
	salt = append(append(salt, ephPub...), recipientPub...)
	key, err := hkdf.Key(sha256.New, secret, salt, sealInfo, 32)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return aead, nil
}
