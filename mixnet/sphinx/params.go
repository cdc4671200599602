package sphinx

import (
	"errors"
	"time"
)

// Geometry. A header is α ‖ γ ‖ β; β holds one routing block per hop.
const (
	MaxHops      = 5  // longest route a header can describe
	AddressSize  = 32 // a node identity, or a destination client identity
	IDSize       = 16 // identifier delivered with the payload at the last hop (SURB id)
	MACSize      = 16 // γ: HMAC-SHA256 truncated
	GroupElement = 32 // α: an X25519 u-coordinate

	flagSize  = 1
	verSize   = 3
	delaySize = 8
	// BlockSize is one hop's routing block: flag ‖ version ‖ address ‖ delay ‖ next MAC.
	BlockSize = flagSize + verSize + AddressSize + delaySize + MACSize // 60
	// BetaSize is the encrypted routing information.
	BetaSize = MaxHops * BlockSize // 300
	// HeaderSize is α ‖ γ ‖ β.
	HeaderSize = GroupElement + MACSize + BetaSize // 348

	// integritySize zero bytes open every plaintext payload; after the last
	// layer is removed they must still be zero, or the payload was touched.
	integritySize = 16
	// PayloadOverhead is what a payload adds to the message it carries: the
	// integrity prefix and the 0x01 byte that marks where padding starts.
	PayloadOverhead = integritySize + 1
	// MessageOffset is where the message starts in a packet's payload: after
	// the integrity prefix. A caller that builds the payload in place (see
	// NewPacketInPlace) writes the message there.
	MessageOffset = integritySize

	// RegularPayload is the message capacity of a regular packet.
	RegularPayload = 2048
	// AckPayload is the message capacity of an ack packet.
	AckPayload = 21
	// ExtendedPayload is the message capacity of an extended packet, Nym's
	// ExtendedPacket8: four regular payloads behind one header, so a reply
	// of this size carries four times the data for the same Sphinx work at
	// every hop and the same SURB.
	ExtendedPayload = 8192

	// RegularPacketSize is a regular packet on the wire: 2413 bytes.
	RegularPacketSize = HeaderSize + PayloadOverhead + RegularPayload
	// AckPacketSize is an ack packet on the wire: 386 bytes.
	AckPacketSize = HeaderSize + PayloadOverhead + AckPayload
	// ExtendedPacketSize is an extended packet on the wire: 8557 bytes.
	ExtendedPacketSize = HeaderSize + PayloadOverhead + ExtendedPayload
	// MaxPacketSize is the largest packet of any size.
	MaxPacketSize = ExtendedPacketSize

	// MaxDelay is the largest delay a header can carry; nodes cap it lower.
	MaxDelay = time.Duration(1<<63 - 1)
)

// version is the header format version carried in every routing block.
var version = [verSize]byte{0, 0, 1}

const (
	flagForward byte = 1
	flagFinal   byte = 2
)

// Size names the three packet sizes on the network. Packets of any other
// length are refused, so a node cannot be made to process odd sizes that
// would stand out on the next link. Each size is its own anonymity class at
// every mix: a client that sends extended packets (the anonymous-plus
// profile's replies and its loop cover of that size) hides among the packets
// of that size only.
type Size int

// The packet sizes, by message capacity.
const (
	SizeRegular  Size = RegularPayload
	SizeAck      Size = AckPayload
	SizeExtended Size = ExtendedPayload
)

// Valid reports whether s is one of the sizes above.
func (s Size) Valid() bool {
	return s == SizeRegular || s == SizeAck || s == SizeExtended
}

// PacketLen is the wire length of a packet of this size.
func (s Size) PacketLen() int { return HeaderSize + PayloadOverhead + int(s) }

// sizeOf returns the Size of a packet of length n.
func sizeOf(n int) (Size, bool) {
	switch n {
	case RegularPacketSize:
		return SizeRegular, true
	case AckPacketSize:
		return SizeAck, true
	case ExtendedPacketSize:
		return SizeExtended, true
	}
	return 0, false
}

// Errors returned by processing and decoding. They are wrapped with detail;
// test with errors.Is.
var (
	ErrBadSize     = errors.New("sphinx: bad packet size")
	ErrBadMAC      = errors.New("sphinx: header MAC mismatch")
	ErrBadVersion  = errors.New("sphinx: unknown header version")
	ErrBadFlag     = errors.New("sphinx: unknown routing flag")
	ErrBadPoint    = errors.New("sphinx: bad group element")
	ErrBadRoute    = errors.New("sphinx: bad route")
	ErrTooLarge    = errors.New("sphinx: message larger than payload")
	ErrBadPayload  = errors.New("sphinx: payload integrity check failed")
	ErrBadKey      = errors.New("sphinx: bad key")
	ErrBadEncoding = errors.New("sphinx: bad encoding")
)
