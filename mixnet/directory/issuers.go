package directory

import (
	"bytes"
	"cmp"
	"fmt"
)

// Limits on issuer keys.
const (
	// MaxIssuerKeysPerAuthority bounds the ticket keys one authority
	// publishes: one per ticket type and expiry day still to come.
	MaxIssuerKeysPerAuthority = 64
	// MaxIssuerKeySize bounds one encoded issuer key (RSA-4096 in PKIX DER
	// is 550 bytes).
	MaxIssuerKeySize = 1024
)

// IssuerKey is a public key an authority signs bandwidth tickets with
// (package mixnet/ticket decodes and uses it): one per ticket type and
// expiry. An authority puts its own keys in its vote, and the consensus
// carries, for each authority, the keys that authority voted for itself.
type IssuerKey struct {
	Authority Key   `json:"authority"`
	Type      uint8 `json:"type"`
	// Expiry is when the tickets signed with this key expire, unix seconds.
	Expiry int64 `json:"expiry"`
	// Key is the public key, PKIX DER.
	Key []byte `json:"key"`
}

// CompareIssuerKeys orders issuer keys by authority, type and expiry: the
// order documents carry them in, so equal sets encode alike.
func CompareIssuerKeys(a, b IssuerKey) int {
	if c := bytes.Compare(a.Authority[:], b.Authority[:]); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Type, b.Type); c != 0 {
		return c
	}
	return cmp.Compare(a.Expiry, b.Expiry)
}

// validateIssuerKeys checks a list of issuer keys as documents carry them:
// in CompareIssuerKeys order without duplicates, keys of 1..MaxIssuerKeySize
// bytes, at most MaxIssuerKeysPerAuthority per authority. Their contents
// are judged by the ticket package, which uses them.
func validateIssuerKeys(keys []IssuerKey) error {
	per := 0
	for i, k := range keys {
		if k.Authority.IsZero() {
			return fmt.Errorf("%w: issuer key %d names no authority", ErrInvalid, i)
		}
		if len(k.Key) == 0 || len(k.Key) > MaxIssuerKeySize {
			return fmt.Errorf("%w: issuer key %d of %s has %d bytes (1..%d)", ErrInvalid, i, k.Authority, len(k.Key), MaxIssuerKeySize)
		}
		per++
		if i > 0 {
			c := CompareIssuerKeys(keys[i-1], k)
			if c >= 0 {
				return fmt.Errorf("%w: issuer keys out of order or repeated at %d (%s type %d expiry %d)", ErrInvalid, i, k.Authority, k.Type, k.Expiry)
			}
			if keys[i-1].Authority != k.Authority {
				per = 1
			}
		}
		if per > MaxIssuerKeysPerAuthority {
			return fmt.Errorf("%w: %s publishes more than %d issuer keys", ErrInvalid, k.Authority, MaxIssuerKeysPerAuthority)
		}
	}
	return nil
}
