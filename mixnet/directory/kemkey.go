package directory

import (
	"crypto/mlkem"
	"fmt"
)

// KEMKeySize is the size of an ML-KEM-768 encapsulation key.
const KEMKeySize = mlkem.EncapsulationKeySize768

// KEMKey is a node's ML-KEM-768 public key for hybrid (post-quantum) link
// handshakes: whoever dials the node encapsulates to it (see mixnet/link).
// Its text form is unpadded base64url like every other key, 1579
// characters.
type KEMKey []byte

// MarshalText implements encoding.TextMarshaler.
func (k KEMKey) MarshalText() ([]byte, error) {
	out := make([]byte, keyEncoding.EncodedLen(len(k)))
	keyEncoding.Encode(out, k)
	return out, nil
}

// UnmarshalText implements encoding.TextUnmarshaler. It accepts only the
// canonical unpadded base64url form of exactly KEMKeySize bytes, checking
// the length before decoding anything.
func (k *KEMKey) UnmarshalText(text []byte) error {
	if len(text) != keyEncoding.EncodedLen(KEMKeySize) {
		return fmt.Errorf("KEM key: want %d base64url characters, got %d", keyEncoding.EncodedLen(KEMKeySize), len(text))
	}
	buf := make([]byte, KEMKeySize)
	n, err := keyEncoding.Strict().Decode(buf, text)
	if err != nil {
		return fmt.Errorf("KEM key %q: %w", truncate(string(text), 50), err)
	}
	if n != KEMKeySize {
		return fmt.Errorf("KEM key: short decode")
	}
	*k = buf
	return nil
}

// RotationKEMKey is a node's KEM key for one Sphinx key rotation.
type RotationKEMKey struct {
	Rotation uint64 `json:"rotation"`
	Key      KEMKey `json:"key"`
}

// validateKEMKeys checks a node's optional KEM keys and the RequiresPQ bit
// that depends on them. None is fine (a node from before post-quantum
// links); otherwise one key, or two for consecutive rotations in increasing
// order, each a well-formed ML-KEM-768 key, so no initiator trips on it.
func validateKEMKeys(keys []RotationKEMKey, requiresPQ bool) error {
	switch {
	case len(keys) == 0 && requiresPQ:
		return fmt.Errorf("%w: requires post-quantum links but publishes no KEM key", ErrInvalid)
	case len(keys) > 2:
		return fmt.Errorf("%w: %d KEM keys, want the current and at most the next rotation's", ErrInvalid, len(keys))
	}
	for i, k := range keys {
		if err := validateKEM(k.Key); err != nil {
			return fmt.Errorf("%w (rotation %d)", err, k.Rotation)
		}
		if i > 0 && (keys[i-1].Rotation == ^uint64(0) || k.Rotation != keys[i-1].Rotation+1) {
			return fmt.Errorf("%w: KEM keys for rotations %d and %d are not consecutive", ErrInvalid, keys[i-1].Rotation, k.Rotation)
		}
	}
	return nil
}

// validateKEM checks one KEM key: exactly KEMKeySize bytes that ML-KEM-768
// accepts as an encapsulation key.
func validateKEM(k KEMKey) error {
	if len(k) != KEMKeySize {
		return fmt.Errorf("%w: KEM key is %d bytes, want %d", ErrInvalid, len(k), KEMKeySize)
	}
	if _, err := mlkem.NewEncapsulationKey768(k); err != nil {
		return fmt.Errorf("%w: KEM key: %v", ErrInvalid, err)
	}
	return nil
}

func kemKeyFor(keys []RotationKEMKey, rotation uint64) (KEMKey, bool) {
	for _, k := range keys {
		if k.Rotation == rotation {
			return k.Key, true
		}
	}
	return nil, false
}
