package ticket

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/nym-go/nym/mixnet/directory"
)

// Type is what a ticket buys. The number is on the wire and in signed
// messages; the name is what operators and users type.
type Type uint8

// Ticket types, as Nym has them.
const (
	TypeMixnetEntry    Type = 1 // 200 MB through an entry gateway of the mixnet
	TypeWireGuardEntry Type = 2 // 500 MB through a fast-mode entry
	TypeWireGuardExit  Type = 3 // 500 MB through a fast-mode exit
)

// Types lists every known type, in number order.
var Types = []Type{TypeMixnetEntry, TypeWireGuardEntry, TypeWireGuardExit}

// Quota is how many bytes one ticket of type t buys at a gateway; 0 for an
// unknown type.
func (t Type) Quota() uint64 {
	switch t {
	case TypeMixnetEntry:
		return 200 << 20
	case TypeWireGuardEntry, TypeWireGuardExit:
		return 500 << 20
	}
	return 0
}

// Known reports whether t is a type this version knows.
func (t Type) Known() bool { return t.Quota() != 0 }

func (t Type) String() string {
	switch t {
	case TypeMixnetEntry:
		return "mixnet-entry"
	case TypeWireGuardEntry:
		return "wireguard-entry"
	case TypeWireGuardExit:
		return "wireguard-exit"
	}
	return fmt.Sprintf("type-%d", uint8(t))
}

// ParseType reads a type's name.
func ParseType(s string) (Type, error) {
	for _, t := range Types {
		if t.String() == s {
			return t, nil
		}
	}
	return 0, fmt.Errorf("unknown ticket type %q: want mixnet-entry, wireguard-entry or wireguard-exit", truncate(s, 40))
}

// Lifetimes. A ticket issued on UTC day D expires at the start of day
// D+ValidDays+1: every ticket issued on one day carries the same expiry, so
// the expiry tells a gateway the issuance day and nothing finer.
const (
	// ValidDays is the least a ticket lasts (Nym's ticketbooks last 7 days).
	ValidDays = 7
	// MaxLifetime bounds how long after its issuance a ticket can be spent:
	// what an authority keeps a reported serial for.
	MaxLifetime = (ValidDays + 1) * 24 * time.Hour
	// SpendWindow is how far a spend's time may be from the gateway's clock.
	SpendWindow = 30 * time.Second
)

// day is the length of an expiry bucket.
const day = 24 * time.Hour

// ExpiryFor is the expiry of tickets issued at now: the start of the UTC day
// ValidDays+1 days after now's, in unix seconds.
func ExpiryFor(now time.Time) int64 {
	return now.UTC().Truncate(day).Add((ValidDays + 1) * day).Unix()
}

// Limits of the encodings.
const (
	// MaxSignatures bounds the issuer signatures one ticket carries: one per
	// authority of a network file.
	MaxSignatures = directory.MaxAuthorities
	// MaxSignatureSize bounds one issuer signature: RSA up to 4096 bits.
	MaxSignatureSize = 512
	// MaxTicketSize bounds an encoded Ticket.
	MaxTicketSize = ticketHeaderSize + MaxSignatures*(directory.KeySize+2+MaxSignatureSize)
)

// Domain separators: every message a key signs or a hash covers starts with
// one, so no signature or hash of one kind can pass for another.
const (
	ticketDomain = "nym-go/ticket/v1\x00"
	serialDomain = "nym-go/ticket/serial/v1\x00"
	spendDomain  = "nym-go/ticket/spend/v1\x00"
	reportDomain = "nym-go/ticket/report/v1\x00"
)

// codecVersion is the first byte of every binary encoding of this package.
const codecVersion = 1

// ErrMalformed means an encoding did not decode, or a value is out of range.
var ErrMalformed = errors.New("malformed ticket data")

// Ticket is one unlinkable ticket: public metadata, the client's per-ticket
// key, and the blind signatures of at least k authorities over
// Message(Type, Expiry, Key).
type Ticket struct {
	Type Type
	// Expiry is when the ticket stops being valid, unix seconds, a UTC day
	// boundary (ExpiryFor), so expiries do not link tickets.
	Expiry int64
	// Key is the ed25519 public key the client made for this ticket alone;
	// a spend is signed by its private key.
	Key [32]byte
	// Signatures are the issuers' signatures, one per authority that
	// signed.
	Signatures []IssuerSignature
}

// IssuerSignature is one authority's RSA signature (RFC 9474,
// RSABSSA-SHA384-PSS-Deterministic) over a ticket's message, made blind.
type IssuerSignature struct {
	Authority directory.Key
	Sig       []byte
}

// Message is what the issuers sign: the domain, type, expiry and ticket key.
func Message(typ Type, expiry int64, key [32]byte) []byte {
	b := make([]byte, 0, len(ticketDomain)+1+8+32)
	b = append(b, ticketDomain...)
	b = append(b, byte(typ))
	b = binary.BigEndian.AppendUint64(b, uint64(expiry))
	return append(b, key[:]...)
}

// Serial is what gateways and authorities record of a spent ticket:
// SHA-256(domain ‖ Key). It names the ticket and nothing else.
func (t *Ticket) Serial() [32]byte { return SerialOf(t.Key) }

// SerialOf is the serial of the ticket whose key is key.
func SerialOf(key [32]byte) [32]byte {
	h := sha256.New()
	h.Write([]byte(serialDomain))
	h.Write(key[:])
	return [32]byte(h.Sum(nil))
}

// ticketHeaderSize: version, type, expiry, key, signature count.
const ticketHeaderSize = 1 + 1 + 8 + 32 + 1

// AppendBinary appends the ticket's encoding:
//
//	version u8 (1) ‖ type u8 ‖ expiry i64 ‖ key [32] ‖ count u8 ‖
//	count × (authority [32] ‖ length u16 ‖ signature)
//
// Integers are big-endian.
func (t *Ticket) AppendBinary(b []byte) ([]byte, error) {
	if len(t.Signatures) > MaxSignatures {
		return b, fmt.Errorf("encode ticket: %d signatures, limit %d", len(t.Signatures), MaxSignatures)
	}
	b = append(b, codecVersion, byte(t.Type))
	b = binary.BigEndian.AppendUint64(b, uint64(t.Expiry))
	b = append(b, t.Key[:]...)
	b = append(b, byte(len(t.Signatures)))
	for _, s := range t.Signatures {
		if len(s.Sig) == 0 || len(s.Sig) > MaxSignatureSize {
			return b, fmt.Errorf("encode ticket: signature of %s has %d bytes (1..%d)", s.Authority, len(s.Sig), MaxSignatureSize)
		}
		b = append(b, s.Authority[:]...)
		b = binary.BigEndian.AppendUint16(b, uint16(len(s.Sig)))
		b = append(b, s.Sig...)
	}
	return b, nil
}

// MarshalBinary encodes the ticket (see AppendBinary).
func (t *Ticket) MarshalBinary() ([]byte, error) { return t.AppendBinary(nil) }

// UnmarshalBinary decodes a ticket; b must hold exactly one.
func (t *Ticket) UnmarshalBinary(b []byte) error {
	rest, err := t.decode(b)
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return fmt.Errorf("%w: %d bytes after the ticket", ErrMalformed, len(rest))
	}
	return nil
}

// decode reads one ticket from the front of b and returns what follows.
// Signatures are copied: the ticket does not alias b.
func (t *Ticket) decode(b []byte) ([]byte, error) {
	d := decoder{b: b}
	if v := d.u8(); d.err == nil && v != codecVersion {
		return nil, fmt.Errorf("%w: ticket version %d, want %d", ErrMalformed, v, codecVersion)
	}
	var out Ticket
	out.Type = Type(d.u8())
	out.Expiry = int64(d.u64())
	d.copy(out.Key[:])
	n := int(d.u8())
	if d.err != nil {
		return nil, fmt.Errorf("ticket: %w", d.err)
	}
	if n > MaxSignatures {
		return nil, fmt.Errorf("%w: ticket has %d signatures, limit %d", ErrMalformed, n, MaxSignatures)
	}
	out.Signatures = make([]IssuerSignature, n)
	for i := range out.Signatures {
		s := &out.Signatures[i]
		d.copy(s.Authority[:])
		l := int(d.u16())
		if d.err == nil && (l == 0 || l > MaxSignatureSize) {
			return nil, fmt.Errorf("%w: signature %d has %d bytes (1..%d)", ErrMalformed, i, l, MaxSignatureSize)
		}
		s.Sig = d.bytes(l)
	}
	if d.err != nil {
		return nil, fmt.Errorf("ticket: %w", d.err)
	}
	*t = out
	return d.b, nil
}

// Spend is a ticket shown to one gateway: signed by the ticket's key over
// domain ‖ gateway identity ‖ time, so that neither that gateway nor anyone
// who saw it can show it anywhere else, or later than SpendWindow.
type Spend struct {
	Ticket  Ticket
	Gateway [32]byte
	// Time is when the client made the spend, unix seconds.
	Time int64
	Sig  [64]byte
}

// spendMessage is what the ticket's key signs.
func spendMessage(gateway [32]byte, at int64) []byte {
	b := make([]byte, 0, len(spendDomain)+32+8)
	b = append(b, spendDomain...)
	b = append(b, gateway[:]...)
	return binary.BigEndian.AppendUint64(b, uint64(at))
}

// NewSpend makes the spend of t at gateway, signed with the ticket's
// private key priv.
func NewSpend(t Ticket, priv ed25519.PrivateKey, gateway [32]byte, now time.Time) (Spend, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return Spend{}, fmt.Errorf("spend: private key has %d bytes, want %d", len(priv), ed25519.PrivateKeySize)
	}
	if [32]byte(priv.Public().(ed25519.PublicKey)) != t.Key {
		return Spend{}, errors.New("spend: the private key is not the ticket's")
	}
	s := Spend{Ticket: t, Gateway: gateway, Time: now.Unix()}
	copy(s.Sig[:], ed25519.Sign(priv, spendMessage(gateway, s.Time)))
	return s, nil
}

// MaxSpendSize bounds an encoded Spend.
const MaxSpendSize = 1 + MaxTicketSize + 32 + 8 + 64

// AppendBinary appends the spend's encoding:
//
//	version u8 (1) ‖ ticket ‖ gateway [32] ‖ time i64 ‖ signature [64]
func (s *Spend) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, codecVersion)
	b, err := s.Ticket.AppendBinary(b)
	if err != nil {
		return b, fmt.Errorf("encode spend: %w", err)
	}
	b = append(b, s.Gateway[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(s.Time))
	return append(b, s.Sig[:]...), nil
}

// MarshalBinary encodes the spend (see AppendBinary).
func (s *Spend) MarshalBinary() ([]byte, error) { return s.AppendBinary(nil) }

// UnmarshalBinary decodes a spend; b must hold exactly one.
func (s *Spend) UnmarshalBinary(b []byte) error {
	if len(b) > MaxSpendSize {
		return fmt.Errorf("%w: spend of %d bytes, limit %d", ErrMalformed, len(b), MaxSpendSize)
	}
	d := decoder{b: b}
	if v := d.u8(); d.err == nil && v != codecVersion {
		return fmt.Errorf("%w: spend version %d, want %d", ErrMalformed, v, codecVersion)
	}
	if d.err != nil {
		return fmt.Errorf("spend: %w", d.err)
	}
	var out Spend
	rest, err := out.Ticket.decode(d.b)
	if err != nil {
		return fmt.Errorf("spend: %w", err)
	}
	d.b = rest
	d.copy(out.Gateway[:])
	out.Time = int64(d.u64())
	d.copy(out.Sig[:])
	if d.err != nil {
		return fmt.Errorf("spend: %w", d.err)
	}
	if len(d.b) != 0 {
		return fmt.Errorf("%w: %d bytes after the spend", ErrMalformed, len(d.b))
	}
	*s = out
	return nil
}

// truncate keeps error messages about hostile input short.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
