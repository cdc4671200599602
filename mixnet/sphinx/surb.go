package sphinx

import (
	"crypto/rand"
	"fmt"
)

// A SURB (single-use reply block) lets its holder send one packet back to the
// SURB's creator without learning the route. Wire form, 412 bytes:
//
//	first hop  32  address the holder sends the reply packet to
//	header    348  a header for the route back to the creator
//	key        32  seed of the Lioness key the holder encrypts the reply with
//
// The holder gets one key, not one per hop, so it cannot compute what the
// payload looks like between hops.
type SURB struct {
	FirstHop [AddressSize]byte
	Header   Header
	Key      [32]byte
}

// SURBSize is the wire size of a SURB.
const SURBSize = AddressSize + HeaderSize + 32

// ReplyKeys are what the creator of a SURB keeps to open the reply. Wire
// form: hop count (1) ‖ one 32-byte seed per hop ‖ the SURB's key (32).
type ReplyKeys struct {
	Hops  int
	Seeds [MaxHops][32]byte
	Key   [32]byte
}

// NewSURB makes a reply block for route, whose last hop delivers to dest:
// normally the creator's own gateway, with dest naming the creator and an ID
// under which it stores the returned keys.
func NewSURB(route []Hop, dest Destination) (SURB, ReplyKeys, error) {
	var s SURB
	var k ReplyKeys
	if err := buildHeader(&s.Header, route, &dest, &k.Seeds); err != nil {
		return SURB{}, ReplyKeys{}, err
	}
	s.FirstHop = route[0].Address
	rand.Read(s.Key[:])
	k.Key = s.Key
	k.Hops = len(route)
	return s, k, nil
}

// Packet builds the reply packet; send it to s.FirstHop. A SURB must be used
// once: a second packet from it carries the same replay tag and is dropped.
func (s *SURB) Packet(msg []byte, size Size) ([]byte, error) {
	pkt, err := newBuffer(msg, size)
	if err != nil {
		return nil, err
	}
	if err := s.PacketInPlace(pkt, len(msg), size); err != nil {
		return nil, err
	}
	return pkt, nil
}

// PacketInPlace is Packet for a caller that built the message where the
// packet will carry it, as NewPacketInPlace takes it: pkt is
// size.PacketLen() bytes holding msgLen bytes of message at
// pkt[HeaderSize+MessageOffset:], and becomes the reply packet.
func (s *SURB) PacketInPlace(pkt []byte, msgLen int, size Size) error {
	payload, err := padInPlace(pkt, msgLen, size)
	if err != nil {
		return err
	}
	s.Header.AppendBinary(pkt[:0])
	var lk lionessKeys
	lk.expand(&s.Key)
	lk.encrypt(payload)
	return nil
}

// Open recovers the reply message from the payload its creator received. It
// works in place and returns a sub-slice of payload.
func (k *ReplyKeys) Open(payload []byte) ([]byte, error) {
	if k.Hops < 1 || k.Hops > MaxHops {
		return nil, fmt.Errorf("%w: %d hops", ErrBadRoute, k.Hops)
	}
	if len(payload) < PayloadOverhead || len(payload) <= lionessL {
		return nil, fmt.Errorf("%w: payload is %d bytes", ErrBadSize, len(payload))
	}
	// Each hop decrypted with its key; undo them from the last hop back.
	for i := k.Hops - 1; i >= 0; i-- {
		var lk lionessKeys
		lk.expand(&k.Seeds[i])
		lk.encrypt(payload)
	}
	var lk lionessKeys
	lk.expand(&k.Key)
	lk.decrypt(payload)
	return OpenPayload(payload)
}

// AppendBinary appends the SURB's wire form to b.
func (s *SURB) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, s.FirstHop[:]...)
	b, _ = s.Header.AppendBinary(b)
	return append(b, s.Key[:]...), nil
}

// MarshalBinary returns the SURB's 412-byte wire form.
func (s *SURB) MarshalBinary() ([]byte, error) {
	return s.AppendBinary(make([]byte, 0, SURBSize))
}

// UnmarshalBinary reads exactly SURBSize bytes.
func (s *SURB) UnmarshalBinary(b []byte) error {
	if len(b) != SURBSize {
		return fmt.Errorf("%w: SURB is %d bytes, want %d", ErrBadSize, len(b), SURBSize)
	}
	copy(s.FirstHop[:], b)
	s.Header.UnmarshalBinary(b[AddressSize : AddressSize+HeaderSize])
	copy(s.Key[:], b[AddressSize+HeaderSize:])
	return nil
}

// AppendBinary appends the keys' wire form to b.
func (k *ReplyKeys) AppendBinary(b []byte) ([]byte, error) {
	if k.Hops < 1 || k.Hops > MaxHops {
		return nil, fmt.Errorf("%w: %d hops", ErrBadRoute, k.Hops)
	}
	b = append(b, byte(k.Hops))
	for i := range k.Hops {
		b = append(b, k.Seeds[i][:]...)
	}
	return append(b, k.Key[:]...), nil
}

// MarshalBinary returns the keys' wire form.
func (k *ReplyKeys) MarshalBinary() ([]byte, error) { return k.AppendBinary(nil) }

// UnmarshalBinary reads the keys' wire form; the length must match the hop
// count.
func (k *ReplyKeys) UnmarshalBinary(b []byte) error {
	if len(b) < 1 {
		return fmt.Errorf("%w: empty reply keys", ErrBadEncoding)
	}
	n := int(b[0])
	if n < 1 || n > MaxHops {
		return fmt.Errorf("%w: reply keys for %d hops", ErrBadEncoding, n)
	}
	if want := 1 + 32*n + 32; len(b) != want {
		return fmt.Errorf("%w: reply keys are %d bytes, want %d", ErrBadEncoding, len(b), want)
	}
	*k = ReplyKeys{Hops: n}
	for i := range n {
		copy(k.Seeds[i][:], b[1+32*i:])
	}
	copy(k.Key[:], b[1+32*n:])
	return nil
}
