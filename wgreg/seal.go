package wgreg

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hpke"
	"crypto/mlkem"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"
	"unicode/utf8"

	"github.com/nym-go/nym/mixnet/directory"
)

// Role says which part a gateway plays for a registration. It is bound into
// the sealing, so an entry's request cannot be replayed at the exit's door.
type Role uint8

// Roles.
const (
	RoleEntry Role = 1
	RoleExit  Role = 2
)

func (r Role) String() string {
	switch r {
	case RoleEntry:
		return "entry"
	case RoleExit:
		return "exit"
	}
	return fmt.Sprintf("role(%d)", uint8(r))
}

// The HPKE suite: ML-KEM-768 with X25519, HKDF-SHA256, AES-256-GCM.
var (
	suiteKEM  = hpke.MLKEM768X25519()
	suiteKDF  = hpke.HKDFSHA256()
	suiteAEAD = hpke.AES256GCM()
)

// Sizes of the sealing.
const (
	// EncSize is the HPKE encapsulation: an ML-KEM-768 ciphertext and an
	// X25519 share.
	EncSize      = mlkem.CiphertextSize768 + 32
	sealOverhead = 16 // AES-GCM tag
	// requestFixedLen is a Request's plaintext without its Spend.
	requestFixedLen = 32 + NonceSize + 8 + 2
	// NonceSize is a Request's nonce.
	NonceSize = 16
)

const (
	infoPrefix    = "nym-go/wgreg/v1\x00"
	exportReply   = "nym-go/wgreg/v1 reply key"
	exportPSK     = "nym-go/wgreg/v1 wireguard psk"
	sealedHdrSize = 8 + EncSize
)

// Request is what a client asks of a gateway, sealed to it.
type Request struct {
	// WGKey is the client's WireGuard public key (curve25519).
	WGKey [32]byte
	// Nonce is fresh and random per request; the gateway refuses one it
	// has seen.
	Nonce [NonceSize]byte
	// Time is when the client made the request (unix seconds on the
	// wire); the gateway refuses one too far from its clock.
	Time time.Time
	// Spend is a ticket spend of the matching type (wireguard-entry or
	// wireguard-exit), when the gateway requires tickets; at most MaxSpend
	// bytes.
	Spend []byte
}

// AppendBinary appends r's plaintext wire form:
// key [32] ‖ nonce [16] ‖ time i64 ‖ spend length u16 ‖ spend.
func (r *Request) AppendBinary(b []byte) ([]byte, error) {
	if len(r.Spend) > MaxSpend {
		return b, fmt.Errorf("%w: spend of %d bytes, limit %d", ErrMalformed, len(r.Spend), MaxSpend)
	}
	b = append(b, r.WGKey[:]...)
	b = append(b, r.Nonce[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Time.Unix()))
	b = binary.BigEndian.AppendUint16(b, uint16(len(r.Spend)))
	return append(b, r.Spend...), nil
}

// UnmarshalBinary decodes a Request; Spend is a copy.
func (r *Request) UnmarshalBinary(b []byte) error {
	if len(b) < requestFixedLen {
		return fmt.Errorf("%w: request of %d bytes", ErrMalformed, len(b))
	}
	n := int(binary.BigEndian.Uint16(b[56:58]))
	if n > MaxSpend || len(b) != requestFixedLen+n {
		return fmt.Errorf("%w: request spend length %d in %d bytes", ErrMalformed, n, len(b))
	}
	copy(r.WGKey[:], b[:32])
	copy(r.Nonce[:], b[32:48])
	r.Time = time.Unix(int64(binary.BigEndian.Uint64(b[48:56])), 0)
	r.Spend = nil
	if n > 0 {
		r.Spend = append([]byte(nil), b[58:]...)
	}
	return nil
}

// Answer statuses.
const (
	AnswerOK      uint8 = 0
	AnswerRefused uint8 = 1 // replayed, stale or future request, or a key already registered
	AnswerTicket  uint8 = 2 // a ticket is required and this spend is missing or bad
	AnswerFull    uint8 = 3 // no address left
)

// Answer is a gateway's sealed reply to a Request.
type Answer struct {
	Status uint8
	// On AnswerOK: the gateway's WireGuard public key, and the client's
	// tunnel addresses there (AddrV6 may be invalid when the gateway has no
	// IPv6 range).
	GatewayKey     [32]byte
	AddrV4, AddrV6 netip.Prefix
	// PeerTimeout is how long the gateway keeps a peer without a handshake.
	PeerTimeout time.Duration
	// Allowance is the bytes the peer may still move through the gateway
	// (both directions, as WireGuard counts them), this registration's
	// ticket included; past it the gateway removes the peer. A client
	// registers its key again with a new ticket before it runs out, which
	// adds to it. 0: the gateway does not meter this peer.
	Allowance uint64
	// Text says why, on any other status.
	Text string
}

// answerOKLen is an OK answer's size: status, key, v4 addr and bits, v6
// addr and bits, timeout seconds, allowance. answerOKLenV0 is the size
// before the allowance, which older gateways send (read as unmetered).
const (
	answerOKLenV0 = 1 + 32 + 4 + 1 + 16 + 1 + 4
	answerOKLen   = answerOKLenV0 + 8
)

// AppendBinary appends a's plaintext wire form. An absent IPv6 prefix is
// sent as ::/0 with bits 0. An OK answer is
// status u8 ‖ gateway key [32] ‖ v4 [4] ‖ v4 bits u8 ‖ v6 [16] ‖ v6 bits u8 ‖
// peer timeout seconds u32 ‖ allowance u64; any other status ‖ UTF-8 text.
func (a *Answer) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, a.Status)
	if a.Status != AnswerOK {
		return append(b, cutText(a.Text)...), nil
	}
	if !a.AddrV4.IsValid() || !a.AddrV4.Addr().Is4() {
		return b, fmt.Errorf("%w: answer without an IPv4 address", ErrMalformed)
	}
	b = append(b, a.GatewayKey[:]...)
	v4 := a.AddrV4.Addr().As4()
	b = append(append(b, v4[:]...), byte(a.AddrV4.Bits()))
	var v6 [16]byte
	bits6 := 0
	if a.AddrV6.IsValid() {
		if !a.AddrV6.Addr().Is6() || a.AddrV6.Addr().Is4In6() || a.AddrV6.Bits() == 0 {
			return b, fmt.Errorf("%w: answer's IPv6 prefix %s", ErrMalformed, a.AddrV6)
		}
		v6, bits6 = a.AddrV6.Addr().As16(), a.AddrV6.Bits()
	}
	b = append(append(b, v6[:]...), byte(bits6))
	secs := min(a.PeerTimeout/time.Second, 1<<32-1)
	b = binary.BigEndian.AppendUint32(b, uint32(secs))
	return binary.BigEndian.AppendUint64(b, a.Allowance), nil
}

// UnmarshalBinary decodes an Answer.
func (a *Answer) UnmarshalBinary(b []byte) error {
	*a = Answer{}
	if len(b) == 0 {
		return fmt.Errorf("%w: empty answer", ErrMalformed)
	}
	a.Status = b[0]
	if a.Status != AnswerOK {
		if len(b)-1 > MaxErrorText || !utf8.Valid(b[1:]) {
			return fmt.Errorf("%w: answer text", ErrMalformed)
		}
		a.Text = string(b[1:])
		return nil
	}
	if len(b) != answerOKLen && len(b) != answerOKLenV0 {
		return fmt.Errorf("%w: answer of %d bytes, want %d", ErrMalformed, len(b), answerOKLen)
	}
	copy(a.GatewayKey[:], b[1:33])
	if bits4 := int(b[37]); bits4 == 0 || bits4 > 32 {
		return fmt.Errorf("%w: answer's IPv4 prefix length %d", ErrMalformed, bits4)
	}
	a.AddrV4 = netip.PrefixFrom(netip.AddrFrom4([4]byte(b[33:37])), int(b[37]))
	if bits6 := int(b[54]); bits6 != 0 {
		if bits6 > 128 {
			return fmt.Errorf("%w: answer's IPv6 prefix length %d", ErrMalformed, bits6)
		}
		a.AddrV6 = netip.PrefixFrom(netip.AddrFrom16([16]byte(b[38:54])), bits6)
	}
	a.PeerTimeout = time.Duration(binary.BigEndian.Uint32(b[55:59])) * time.Second
	if len(b) == answerOKLen {
		a.Allowance = binary.BigEndian.Uint64(b[59:67])
	}
	return nil
}

// info is the HPKE info: protocol, role and the gateway's identity.
func info(role Role, gateway directory.Key) []byte {
	b := append([]byte(infoPrefix), byte(role))
	return append(b, gateway[:]...)
}

// PublicKey is the HPKE key of gw for rotation: its ML-KEM-768 key of that
// rotation with its Noise X25519 key. Without a key for rotation, it takes
// the first the node lists.
func PublicKey(gw *directory.Node, rotation uint64) (hpke.PublicKey, uint64, error) {
	kem, ok := gw.KEMKeyFor(rotation)
	if !ok {
		if len(gw.KEMKeys) == 0 {
			return nil, 0, fmt.Errorf("wgreg: gateway %s publishes no ML-KEM key", gw.Identity)
		}
		kem, rotation = gw.KEMKeys[0].Key, gw.KEMKeys[0].Rotation
	}
	ek, err := mlkem.NewEncapsulationKey768(kem)
	if err != nil {
		return nil, 0, fmt.Errorf("wgreg: gateway %s's ML-KEM key: %w", gw.Identity, err)
	}
	x, err := ecdh.X25519().NewPublicKey(gw.NoiseKey[:])
	if err != nil {
		return nil, 0, fmt.Errorf("wgreg: gateway %s's noise key: %w", gw.Identity, err)
	}
	pk, err := hpke.NewHybridPublicKey(ek, x)
	if err != nil {
		return nil, 0, fmt.Errorf("wgreg: gateway %s's HPKE key: %w", gw.Identity, err)
	}
	return pk, rotation, nil
}

// NewPrivateKey is a gateway's HPKE private key from its ML-KEM-768 seed of
// one rotation and its Noise X25519 private key.
func NewPrivateKey(kemSeed []byte, noisePrivate [32]byte) (hpke.PrivateKey, error) {
	dk, err := mlkem.NewDecapsulationKey768(kemSeed)
	if err != nil {
		return nil, fmt.Errorf("wgreg: ML-KEM seed: %w", err)
	}
	x, err := ecdh.X25519().NewPrivateKey(noisePrivate[:])
	if err != nil {
		return nil, fmt.Errorf("wgreg: X25519 key: %w", err)
	}
	k, err := hpke.NewHybridPrivateKey(dk, x)
	if err != nil {
		return nil, fmt.Errorf("wgreg: HPKE key: %w", err)
	}
	return k, nil
}

// Pending is a client's sealed request waiting for its answer.
type Pending struct {
	s *hpke.Sender
}

// SealRequest seals req to gw in role, with gw's key for rotation (see
// PublicKey).
func SealRequest(gw *directory.Node, rotation uint64, role Role, req *Request) ([]byte, *Pending, error) {
	pk, rotation, err := PublicKey(gw, rotation)
	if err != nil {
		return nil, nil, err
	}
	plain, err := req.AppendBinary(nil)
	if err != nil {
		return nil, nil, err
	}
	enc, s, err := hpke.NewSender(pk, suiteKDF, suiteAEAD, info(role, gw.Identity))
	if err != nil {
		return nil, nil, fmt.Errorf("wgreg: sealing to %s: %w", gw.Identity, err)
	}
	hdr := binary.BigEndian.AppendUint64(make([]byte, 0, sealedHdrSize+len(plain)+sealOverhead), rotation)
	ct, err := s.Seal(hdr[:8], plain)
	if err != nil {
		return nil, nil, fmt.Errorf("wgreg: sealing to %s: %w", gw.Identity, err)
	}
	return append(append(hdr, enc...), ct...), &Pending{s: s}, nil
}

// OpenAnswer opens the gateway's sealed answer.
func (p *Pending) OpenAnswer(sealed []byte) (*Answer, error) {
	key, err := p.s.Export(exportReply, 32)
	if err != nil {
		return nil, fmt.Errorf("wgreg: reply key: %w", err)
	}
	plain, err := openReply(key, sealed)
	if err != nil {
		return nil, err
	}
	a := new(Answer)
	if err := a.UnmarshalBinary(plain); err != nil {
		return nil, err
	}
	return a, nil
}

// PSK is the WireGuard pre-shared key of this registration.
func (p *Pending) PSK() ([32]byte, error) { return exportKey(p.s.Export) }

// Opened is a request as the gateway opened it, ready to be answered.
type Opened struct {
	r *hpke.Recipient
}

// ErrUnknownRotation is returned, wrapped, by OpenRequest when the gateway
// holds no key for the request's rotation.
var ErrUnknownRotation = errors.New("wgreg: no key for that rotation")

// RequestRotation reads the key rotation a sealed request names.
func RequestRotation(sealed []byte) (uint64, error) {
	if len(sealed) < sealedHdrSize+sealOverhead+requestFixedLen || len(sealed) > MaxSealed {
		return 0, fmt.Errorf("%w: sealed request of %d bytes", ErrMalformed, len(sealed))
	}
	return binary.BigEndian.Uint64(sealed), nil
}

// OpenRequest opens a request sealed to the gateway identity in role, with
// key, the gateway's private key of the rotation RequestRotation names.
func OpenRequest(sealed []byte, role Role, identity directory.Key, key hpke.PrivateKey) (*Request, *Opened, error) {
	if _, err := RequestRotation(sealed); err != nil {
		return nil, nil, err
	}
	r, err := hpke.NewRecipient(sealed[8:sealedHdrSize], key, suiteKDF, suiteAEAD, info(role, identity))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	plain, err := r.Open(sealed[:8], sealed[sealedHdrSize:])
	if err != nil {
		return nil, nil, fmt.Errorf("%w: does not open: %v", ErrMalformed, err)
	}
	req := new(Request)
	if err := req.UnmarshalBinary(plain); err != nil {
		return nil, nil, err
	}
	return req, &Opened{r: r}, nil
}

// SealAnswer seals a for the client that sent the request.
func (o *Opened) SealAnswer(a *Answer) ([]byte, error) {
	plain, err := a.AppendBinary(nil)
	if err != nil {
		return nil, err
	}
	key, err := o.r.Export(exportReply, 32)
	if err != nil {
		return nil, fmt.Errorf("wgreg: reply key: %w", err)
	}
	aead, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	// The key serves one message only, so a zero nonce is safe.
	return aead.Seal(nil, make([]byte, aead.NonceSize()), plain, nil), nil
}

// PSK is the WireGuard pre-shared key of this registration.
func (o *Opened) PSK() ([32]byte, error) { return exportKey(o.r.Export) }

func exportKey(export func(string, int) ([]byte, error)) ([32]byte, error) {
	k, err := export(exportPSK, 32)
	if err != nil {
		return [32]byte{}, fmt.Errorf("wgreg: psk: %w", err)
	}
	return [32]byte(k), nil
}

func openReply(key, sealed []byte) ([]byte, error) {
	if len(sealed) < sealOverhead || len(sealed) > MaxSealed {
		return nil, fmt.Errorf("%w: sealed reply of %d bytes", ErrMalformed, len(sealed))
	}
	aead, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	plain, err := aead.Open(nil, make([]byte, aead.NonceSize()), sealed, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: reply does not open", ErrMalformed)
	}
	return plain, nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("wgreg: reply cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("wgreg: reply cipher: %w", err)
	}
	return aead, nil
}
