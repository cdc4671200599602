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

// validateKEM checks an optional KEM key and the RequiresPQ bit that
// depends on it. Absent is fine (a node from before post-quantum links);
// present must be a well-formed ML-KEM-768 key, so no initiator trips on it.
func validateKEM(k KEMKey, requiresPQ bool) error {
	if len(k) == 0 {
		if requiresPQ {
			return fmt.Errorf("%w: requires post-quantum links but publishes no KEM key", ErrInvalid)
		}
		return nil
	}
	if len(k) != KEMKeySize {
		return fmt.Errorf("%w: KEM key is %d bytes, want %d", ErrInvalid, len(k), KEMKeySize)
	}
	if _, err := mlkem.NewEncapsulationKey768(k); err != nil {
		return fmt.Errorf("%w: KEM key: %v", ErrInvalid, err)
	}
	return nil
}
