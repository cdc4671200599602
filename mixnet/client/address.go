package client

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/nym-go/nym/mixnet/directory"
)

// Address names a client in the network: its identity (the X25519 public key
// it authenticates to its gateway with, and that messages are sealed to) and
// the identity of the gateway that receives its packets.
type Address struct {
	Identity [32]byte
	Gateway  directory.Key
}

// ErrBadAddress is wrapped by every ParseAddress error.
var ErrBadAddress = errors.New("client: malformed address")

// addressEncoding is unpadded base64url, as directory keys are printed.
var addressEncoding = base64.RawURLEncoding

// encodedKeyLen is the length of one 32-byte key in addressEncoding.
var encodedKeyLen = addressEncoding.EncodedLen(32)

// String returns the text form: identity "." gateway, each unpadded base64url.
func (a Address) String() string {
	return addressEncoding.EncodeToString(a.Identity[:]) + "." + addressEncoding.EncodeToString(a.Gateway[:])
}

// IsZero reports whether a is the zero Address.
func (a Address) IsZero() bool { return a == Address{} }

// MarshalText implements encoding.TextMarshaler.
func (a Address) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (a *Address) UnmarshalText(text []byte) error {
	p, err := ParseAddress(string(text))
	if err != nil {
		return err
	}
	*a = p
	return nil
}

// ParseAddress reads the text form of an Address.
func ParseAddress(s string) (Address, error) {
	ident, gw, ok := strings.Cut(s, ".")
	if !ok {
		return Address{}, fmt.Errorf("%w: %q has no '.' between identity and gateway", ErrBadAddress, truncateForError(s))
	}
	var a Address
	if err := decodeKey(a.Identity[:], ident, "identity"); err != nil {
		return Address{}, err
	}
	if err := decodeKey(a.Gateway[:], gw, "gateway"); err != nil {
		return Address{}, err
	}
	return a, nil
}

func decodeKey(dst []byte, s, what string) error {
	if len(s) != encodedKeyLen {
		return fmt.Errorf("%w: %s part has %d characters, want %d", ErrBadAddress, what, len(s), encodedKeyLen)
	}
	n, err := addressEncoding.Decode(dst, []byte(s))
	if err != nil || n != len(dst) {
		return fmt.Errorf("%w: %s part is not base64url: %v", ErrBadAddress, what, err)
	}
	// Only the canonical encoding is accepted, so an address has one text form.
	if addressEncoding.EncodeToString(dst) != s {
		return fmt.Errorf("%w: %s part is not in canonical base64url", ErrBadAddress, what)
	}
	return nil
}

func truncateForError(s string) string {
	const max = 100
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}

// AnonymousSenderTag names a sender that attached reply SURBs without saying
// who it is. A receiver replies to the tag; it never learns an address.
type AnonymousSenderTag [16]byte

// newSenderTag returns a fresh random tag.
func newSenderTag() AnonymousSenderTag {
	var t AnonymousSenderTag
	rand.Read(t[:])
	return t
}

// IsZero reports whether t is the zero tag, which no sender uses.
func (t AnonymousSenderTag) IsZero() bool { return t == AnonymousSenderTag{} }

// String returns the tag in unpadded base64url.
func (t AnonymousSenderTag) String() string { return addressEncoding.EncodeToString(t[:]) }
