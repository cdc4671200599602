package ticket

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha512"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/cloudflare/circl/blindsign/blindrsa"
	"github.com/nym-go/nym/mixnet/directory"
)

// variant is the RFC 9474 variant every issuer signs with: PSS with a
// 48-byte salt. Deterministic means the message is not randomized by a
// prefix; the message holds a fresh random ticket key, so it need not be.
const variant = blindrsa.SHA384PSSDeterministic

// Issuer key sizes accepted. Authorities make 2048-bit keys.
const (
	MinIssuerKeyBits = 2048
	MaxIssuerKeyBits = 4096
)

// Errors of Verify, for errors.Is.
var (
	// ErrExpired: the ticket's expiry has passed, or is further away than
	// any issuer could have set it.
	ErrExpired = errors.New("ticket expired")
	// ErrStale: the spend's time is more than SpendWindow from the
	// gateway's clock.
	ErrStale = errors.New("spend is stale")
	// ErrWrongGateway: the spend names another gateway.
	ErrWrongGateway = errors.New("spend is for another gateway")
	// ErrSignatures: fewer than k valid signatures of distinct issuers, or
	// a bad signature by the ticket's key.
	ErrSignatures = errors.New("ticket signatures do not verify")
)

// issuerID names one issuer key: an authority's key for a type and expiry.
type issuerID struct {
	authority directory.Key
	typ       Type
	expiry    int64
}

// Issuers are the authorities' public ticket keys and the threshold k, taken
// from a verified consensus. The zero value verifies nothing.
type Issuers struct {
	k    int
	keys map[issuerID]*rsa.PublicKey
}

// IssuersFrom takes the issuer keys of net's authorities out of top, a
// topology verified against net. Keys of unknown types, of authorities not
// in net, or that do not parse are left out (a newer authority may publish
// types this version does not know); it fails only when top carries no
// usable key at all.
func IssuersFrom(net *directory.Network, top *directory.Topology) (Issuers, error) {
	is := Issuers{k: net.Threshold, keys: make(map[issuerID]*rsa.PublicKey)}
	for _, ik := range top.Issuers {
		if _, ok := net.Authority(ik.Authority); !ok || !Type(ik.Type).Known() {
			continue
		}
		pub, err := ParsePublicKey(ik.Key)
		if err != nil {
			continue
		}
		is.keys[issuerID{ik.Authority, Type(ik.Type), ik.Expiry}] = pub
	}
	if len(is.keys) == 0 {
		return Issuers{}, fmt.Errorf("epoch %d: the consensus carries no ticket issuer key of the network's authorities", top.Epoch)
	}
	return is, nil
}

// Threshold is k, the signatures a ticket needs.
func (is Issuers) Threshold() int { return is.k }

// Key returns authority's public key for tickets of typ expiring at expiry.
func (is Issuers) Key(authority directory.Key, typ Type, expiry int64) (*rsa.PublicKey, bool) {
	pub, ok := is.keys[issuerID{authority, typ, expiry}]
	return pub, ok
}

// ParsePublicKey decodes an issuer's public key (PKIX DER) and checks that
// it is RSA of MinIssuerKeyBits..MaxIssuerKeyBits bits with e = 65537.
func ParsePublicKey(der []byte) (*rsa.PublicKey, error) {
	if len(der) > directory.MaxIssuerKeySize {
		return nil, fmt.Errorf("%w: issuer key of %d bytes", ErrMalformed, len(der))
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("%w: issuer key: %v", ErrMalformed, err)
	}
	pub, ok := k.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: issuer key is %T, not RSA", ErrMalformed, k)
	}
	if bits := pub.N.BitLen(); bits < MinIssuerKeyBits || bits > MaxIssuerKeyBits || pub.E != 65537 {
		return nil, fmt.Errorf("%w: issuer key: %d bits, e = %d (want %d..%d bits, e = 65537)", ErrMalformed, bits, pub.E, MinIssuerKeyBits, MaxIssuerKeyBits)
	}
	return pub, nil
}

// verifySignature checks one issuer signature over msg under pub. An
// unblinded RFC 9474 signature is a plain RSASSA-PSS signature (SHA-384,
// 48-byte salt), so the standard library checks it, faster than circl's
// math/big path.
func verifySignature(pub *rsa.PublicKey, msg, sig []byte) error {
	digest := sha512.Sum384(msg)
	return rsa.VerifyPSS(pub, crypto.SHA384, digest[:], sig, &rsa.PSSOptions{SaltLength: sha512.Size384, Hash: crypto.SHA384})
}

// CheckTicket checks the ticket alone at now: type known, expiry on a UTC
// day boundary, not expired (nor expiring later than any issuer sets it),
// no authority named twice, and at least k valid signatures of distinct
// authorities under their keys for its type and expiry.
func (is Issuers) CheckTicket(t *Ticket, now time.Time) error {
	if !t.Type.Known() {
		return fmt.Errorf("%w: unknown ticket type %d", ErrMalformed, t.Type)
	}
	if t.Expiry%int64(day/time.Second) != 0 {
		// Every honest issuer signs day-boundary expiries only: a ticket of
		// any other expiry belongs to a set of one, made to be followed.
		return fmt.Errorf("%w: expiry %d is not a UTC day boundary", ErrMalformed, t.Expiry)
	}
	if t.Expiry <= now.Unix() {
		return fmt.Errorf("%w: %s ticket expired at %s", ErrExpired, t.Type, time.Unix(t.Expiry, 0).UTC().Format(time.RFC3339))
	}
	if t.Expiry > ExpiryFor(now.Add(day)) {
		return fmt.Errorf("%w: expiry %s is later than any issuer sets", ErrExpired, time.Unix(t.Expiry, 0).UTC().Format(time.RFC3339))
	}
	if is.k <= 0 {
		return fmt.Errorf("%w: no issuers known", ErrSignatures)
	}
	// An authority signs a ticket once: a name repeated is refused before
	// any RSA work, so a spend costs at most one verification per
	// authority of the network, however many signatures it carries.
	named := make(map[directory.Key]bool, len(t.Signatures))
	for _, s := range t.Signatures {
		if named[s.Authority] {
			return fmt.Errorf("%w: %s signs the ticket twice", ErrMalformed, s.Authority)
		}
		named[s.Authority] = true
	}
	msg := Message(t.Type, t.Expiry, t.Key)
	valid := 0
	for _, s := range t.Signatures {
		pub, ok := is.keys[issuerID{s.Authority, t.Type, t.Expiry}]
		if !ok || verifySignature(pub, msg, s.Sig) != nil {
			continue
		}
		if valid++; valid >= is.k {
			return nil
		}
	}
	return fmt.Errorf("%w: %d valid issuer signatures of %d carried, %d needed", ErrSignatures, valid, len(t.Signatures), is.k)
}

// Verify checks a spend shown to gateway at now: the time within
// SpendWindow of now, the gateway, the ticket key's signature, then the
// ticket (CheckTicket); cheap checks first, since anyone can send a spend.
// It does NOT check the spent set: the gateway does.
func (is Issuers) Verify(s *Spend, gateway [32]byte, now time.Time) error {
	if !within(s.Time, now, SpendWindow) {
		return fmt.Errorf("%w: made at %s, more than %s from the gateway's clock (%s)", ErrStale,
			time.Unix(s.Time, 0).UTC().Format(time.RFC3339), SpendWindow, now.UTC().Format(time.RFC3339))
	}
	if s.Gateway != gateway {
		return fmt.Errorf("%w: it names %s", ErrWrongGateway, directory.Key(s.Gateway))
	}
	if !ed25519.Verify(ed25519.PublicKey(s.Ticket.Key[:]), spendMessage(s.Gateway, s.Time), s.Sig[:]) {
		return fmt.Errorf("%w: the ticket key's signature over the spend is not valid", ErrSignatures)
	}
	return is.CheckTicket(&s.Ticket, now)
}

// within reports whether unix time at is no further than window from now.
// It compares seconds: a distance turned into a Duration could overflow
// and wrap into the window (a spend dated 2^55 s ago would never go stale).
func within(at int64, now time.Time, window time.Duration) bool {
	n, w := now.Unix(), int64(window/time.Second)
	return at >= n-w && at <= n+w
}
