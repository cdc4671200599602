package client

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"slices"
	"sync"

	"github.com/nym-go/nym/mixnet/sphinx"
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
	if err := sealInPlace(dst[n:], (*[32]byte)(recipient.Bytes())); err != nil {
		return dst[:n], err
	}
	return dst, nil
}

// sealInPlace seals b = eph 32 ‖ plaintext ‖ 16 bytes for the tag, in place:
// it writes the ephemeral key in front and the tag behind, and the
// ciphertext exactly over the plaintext, as AEADs allow.
//
// The exchange is X25519 as crypto/ecdh does it, through sphinx's keys,
// which allocate nothing per multiplication (crypto/ecdh allocates seven
// objects per packet).
func sealInPlace(b []byte, recipient *[32]byte) error {
	if len(b) < SealOverhead {
		return fmt.Errorf("seal: %d bytes, less than the overhead", len(b))
	}
	var eph sphinx.PrivateKey
	eph.Generate()
	var secret [32]byte
	if err := eph.ECDH(&secret, recipient); err != nil {
		return fmt.Errorf("seal: %w", err)
	}
	ephPub := eph.PublicKey()
	aead, err := sealAEAD(secret[:], ephPub[:], recipient[:])
	if err != nil {
		return err
	}
	copy(b, ephPub[:])
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
	k := sealKDFs.Get().(*sealKDF)
	key := k.key(secret, ephPub, recipientPub)
	sealKDFs.Put(k)
	block, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return aead, nil
}

// sealKDF computes the packet key, HKDF-SHA256(secret, salt = ephPub ‖
// recipientPub, info = sealInfo) to 32 bytes, with a SHA-256 state reused
// across packets: crypto/hkdf allocates about fifteen objects per call,
// once per packet sent and received. TestSealKDF checks it against
// crypto/hkdf.
type sealKDF struct {
	h   hash.Hash
	pad [sha256.BlockSize]byte
	sum [sha256.Size]byte
	// ikm holds the secret while it is hashed: handed to h.Write directly,
	// a caller's array would escape to the heap.
	ikm [32]byte
}

var sealKDFs = sync.Pool{New: func() any { return &sealKDF{h: sha256.New()} }}

var (
	sealInfoBytes = []byte(sealInfo)
	hkdfBlock1    = []byte{1}
)

// key returns the packet key. secret, ephPub and recipientPub are 32 bytes
// each.
func (k *sealKDF) key(secret, ephPub, recipientPub []byte) [32]byte {
	copy(k.ikm[:], secret)
	// Extract: PRK = HMAC(salt, secret). The 64-byte salt is one SHA-256
	// block, so HMAC uses it as the key unhashed.
	copy(k.pad[:], ephPub)
	copy(k.pad[32:], recipientPub)
	k.hmac(k.ikm[:], nil)
	clear(k.ikm[:])
	// Expand, one block: T(1) = HMAC(PRK, info ‖ 0x01).
	clear(k.pad[:])
	copy(k.pad[:], k.sum[:])
	k.hmac(sealInfoBytes, hkdfBlock1)
	return k.sum
}

// hmac sets sum to HMAC-SHA256 of a ‖ b under the key in pad (zero-padded
// to the block), leaving pad as it found it.
func (k *sealKDF) hmac(a, b []byte) {
	for i := range k.pad {
		k.pad[i] ^= 0x36
	}
	k.h.Reset()
	k.h.Write(k.pad[:])
	k.h.Write(a)
	k.h.Write(b)
	k.h.Sum(k.sum[:0])
	for i := range k.pad {
		k.pad[i] ^= 0x36 ^ 0x5c
	}
	k.h.Reset()
	k.h.Write(k.pad[:])
	k.h.Write(k.sum[:])
	k.h.Sum(k.sum[:0])
	for i := range k.pad {
		k.pad[i] ^= 0x5c
	}
}
