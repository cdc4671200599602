package directory

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
)

// KeySize is the size of every public key the directory handles: ed25519
// identities and X25519 Noise and Sphinx keys.
const KeySize = 32

// Key is a 32-byte public key. Its text form (JSON, logs, the CLI) is
// unpadded base64url, so every key field on the wire looks the same.
type Key [KeySize]byte

var keyEncoding = base64.RawURLEncoding

// ParseKey decodes the text form of a key.
func ParseKey(s string) (Key, error) {
	var k Key
	if err := k.UnmarshalText([]byte(s)); err != nil {
		return Key{}, err
	}
	return k, nil
}

// KeyFromEd25519 converts an ed25519 public key into a Key.
func KeyFromEd25519(pub ed25519.PublicKey) (Key, error) {
	if len(pub) != ed25519.PublicKeySize {
		return Key{}, fmt.Errorf("ed25519 public key has %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	return Key(pub), nil
}

// Ed25519 returns k as an ed25519 public key.
func (k Key) Ed25519() ed25519.PublicKey { return ed25519.PublicKey(k[:]) }

// IsZero reports whether k is all zeros, which no real key is.
func (k Key) IsZero() bool { return k == Key{} }

// String returns the text form of k.
func (k Key) String() string { return keyEncoding.EncodeToString(k[:]) }

// MarshalText implements encoding.TextMarshaler.
func (k Key) MarshalText() ([]byte, error) {
	out := make([]byte, keyEncoding.EncodedLen(KeySize))
	keyEncoding.Encode(out, k[:])
	return out, nil
}

// UnmarshalText implements encoding.TextUnmarshaler. It accepts only the
// canonical 43-character unpadded base64url form.
func (k *Key) UnmarshalText(text []byte) error {
	if len(text) != keyEncoding.EncodedLen(KeySize) {
		return fmt.Errorf("key %q: want %d base64url characters, got %d", truncate(string(text), 50), keyEncoding.EncodedLen(KeySize), len(text))
	}
	var buf [KeySize]byte
	n, err := keyEncoding.Strict().Decode(buf[:], text)
	if err != nil {
		return fmt.Errorf("key %q: %w", truncate(string(text), 50), err)
	}
	if n != KeySize {
		return errors.New("key: short decode")
	}
	*k = buf
	return nil
}

// truncate keeps error messages about hostile input short.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
