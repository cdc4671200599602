package sphinx

import (
	"encoding/binary"
	"fmt"
	"time"
)

// Header is the Sphinx header: 348 bytes on the wire, in this order.
//
//	α  32  X25519 u-coordinate; each hop derives its shared secret from it
//	γ  16  HMAC-SHA256/16 of β under this hop's MAC key
//	β 300  five 60-byte routing blocks, encrypted in layers
type Header struct {
	Alpha [GroupElement]byte
	Gamma [MACSize]byte
	Beta  [BetaSize]byte
}

// AppendBinary appends the wire form of h to b.
func (h *Header) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, h.Alpha[:]...)
	b = append(b, h.Gamma[:]...)
	return append(b, h.Beta[:]...), nil
}

// MarshalBinary returns the 348-byte wire form of h.
func (h *Header) MarshalBinary() ([]byte, error) {
	return h.AppendBinary(make([]byte, 0, HeaderSize))
}

// UnmarshalBinary reads exactly HeaderSize bytes.
func (h *Header) UnmarshalBinary(b []byte) error {
	if len(b) != HeaderSize {
		return fmt.Errorf("%w: header is %d bytes, want %d", ErrBadSize, len(b), HeaderSize)
	}
	copy(h.Alpha[:], b[:GroupElement])
	copy(h.Gamma[:], b[GroupElement:GroupElement+MACSize])
	copy(h.Beta[:], b[GroupElement+MACSize:])
	return nil
}

// routingBlock is one hop's 60 bytes of β once its layer is removed.
//
//	flag      1  1 = forward, 2 = final
//	version   3  header format version, 0 0 1
//	address  32  forward: next node's address; final: destination
//	rest     24  forward: delay (u64 ns, big-endian) ‖ next hop's γ (16)
//	             final: identifier (16) ‖ 8 random bytes
type routingBlock struct {
	Flag    byte
	Version [verSize]byte
	Address [AddressSize]byte
	Delay   uint64        // forward only
	MAC     [MACSize]byte // forward only
	ID      [IDSize]byte  // final only
}

func (r *routingBlock) marshal(b []byte) {
	_ = b[BlockSize-1]
	b[0] = r.Flag
	copy(b[1:4], r.Version[:])
	copy(b[4:36], r.Address[:])
	if r.Flag == flagFinal {
		copy(b[36:52], r.ID[:])
		return // the last 8 bytes stay as the caller filled them (random)
	}
	binary.BigEndian.PutUint64(b[36:44], r.Delay)
	copy(b[44:60], r.MAC[:])
}

func (r *routingBlock) unmarshal(b []byte) error {
	if len(b) < BlockSize {
		return fmt.Errorf("%w: routing block is %d bytes", ErrBadSize, len(b))
	}
	r.Flag = b[0]
	copy(r.Version[:], b[1:4])
	if r.Version != version {
		return fmt.Errorf("%w: %x", ErrBadVersion, r.Version)
	}
	copy(r.Address[:], b[4:36])
	switch r.Flag {
	case flagForward:
		r.Delay = binary.BigEndian.Uint64(b[36:44])
		copy(r.MAC[:], b[44:60])
		if r.Delay > uint64(MaxDelay) {
			return fmt.Errorf("%w: delay %d ns", ErrBadEncoding, r.Delay)
		}
	case flagFinal:
		copy(r.ID[:], b[36:52])
	default:
		return fmt.Errorf("%w: %d", ErrBadFlag, r.Flag)
	}
	return nil
}

// delay is the block's delay as a Duration; unmarshal bounds it.
func (r *routingBlock) delay() time.Duration { return time.Duration(r.Delay) }
