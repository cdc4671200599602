package sphinx

import (
	"crypto/rand"
	"fmt"
	"time"

	"filippo.io/edwards25519"
	"golang.org/x/crypto/chacha20"
)

// Hop is one node of a route.
type Hop struct {
	// Address is the node's routing address: the previous hop forwards to it.
	Address [AddressSize]byte
	// Key is the node's X25519 Sphinx public key for the packet's rotation.
	Key [32]byte
	// Delay is how long this node holds the packet before forwarding it.
	// The last hop delivers at once; its Delay is not encoded.
	Delay time.Duration
}

// Destination is what the last hop learns: who the payload is for and an
// identifier (for a SURB, which reply keys open it).
type Destination struct {
	Address [AddressSize]byte
	ID      [IDSize]byte
}

var zeroNonce [chacha20.NonceSize]byte

// streamLen is the keystream that removes one layer of β: β plus one block,
// the block that shifts in at the end as the hop's own block shifts out.
const streamLen = BetaSize + BlockSize

// headerStream fills out with hop's β keystream.
func headerStream(out *[streamLen]byte, key *[32]byte) {
	*out = [streamLen]byte{}
	c, _ := chacha20.NewUnauthenticatedCipher(key[:], zeroNonce[:])
	c.XORKeyStream(out[:], out[:])
}

// buildHeader writes a header for route to dest into h and returns each hop's
// payload seed.
//
// Scalar multiplications: one fixed-base (α₀ = x·G) and one per hop
// (sᵢ = x·b₀⋯bᵢ₋₁·Pᵢ). The blinding factors are multiplied as scalars mod ℓ,
// so no hop costs more than one multiplication; a naive sender pays i+1 at
// hop i. A node key met before has a table (fixedkey.go), so the hop's
// multiplication is fixed-base too.
func buildHeader(h *Header, route []Hop, dest *Destination, seeds *[MaxHops][32]byte) error {
	n := len(route)
	if n == 0 || n > MaxHops {
		return fmt.Errorf("%w: %d hops, want 1 to %d", ErrBadRoute, n, MaxHops)
	}
	for i := range route[:n-1] {
		if route[i].Delay < 0 {
			return fmt.Errorf("%w: negative delay at hop %d", ErrBadRoute, i)
		}
	}

	var rnd [64]byte
	rand.Read(rnd[:])
	var x edwards25519.Scalar
	x.SetUniformBytes(rnd[:])
	alpha := baseMult(&x)

	var keys [MaxHops]hopKeys
	acc := x
	for i := range n {
		var k, s [32]byte
		copy(k[:], acc.Bytes())
		if err := fixedSecret(&s, &k, &route[i].Key); err != nil {
			return fmt.Errorf("%w: hop %d: %v", ErrBadKey, i, err)
		}
		deriveHopKeys(&keys[i], &s)
		seeds[i] = keys[i].payload
		if i < n-1 {
			b, _ := blindingScalar(&keys[i].blinding)
			acc.Multiply(&acc, &b)
		}
	}

	var streams [MaxHops][streamLen]byte
	for i := range n {
		headerStream(&streams[i], &keys[i].header)
	}

	// The filler is what each hop's shift appends to the end of β, precomputed
	// so the MACs the sender writes cover the bytes the hops will really see.
	var filler [BetaSize]byte
	for i := 0; i < n-1; i++ {
		fl := (i + 1) * BlockSize
		src := streams[i][streamLen-fl:]
		for j := range fl {
			filler[j] ^= src[j]
		}
	}

	var beta [BetaSize]byte
	last := n - 1
	region := BetaSize - last*BlockSize
	rand.Read(beta[:region]) // the final block's tail and unused blocks look random
	final := routingBlock{Flag: flagFinal, Version: version, Address: dest.Address, ID: dest.ID}
	final.marshal(beta[:BlockSize])
	for j := range region {
		beta[j] ^= streams[last][j]
	}
	copy(beta[region:], filler[:last*BlockSize])
	var gamma [MACSize]byte
	headerMAC(&gamma, &keys[last].mac, beta[:])

	for i := n - 2; i >= 0; i-- {
		var prev [BetaSize]byte
		fwd := routingBlock{
			Flag:    flagForward,
			Version: version,
			Address: route[i+1].Address,
			Delay:   uint64(route[i].Delay),
			MAC:     gamma,
		}
		fwd.marshal(prev[:BlockSize])
		copy(prev[BlockSize:], beta[:BetaSize-BlockSize])
		for j := range prev {
			prev[j] ^= streams[i][j]
		}
		beta = prev
		headerMAC(&gamma, &keys[i].mac, beta[:])
	}

	h.Alpha = alpha
	h.Gamma = gamma
	h.Beta = beta
	return nil
}

// NewPacket builds a forward packet that carries msg along route to dest.
// Each hop removes one layer; the last one hands dest the payload, which
// OpenPayload checks and unpads.
func NewPacket(route []Hop, dest Destination, msg []byte, size Size) ([]byte, error) {
	pkt, err := newBuffer(msg, size)
	if err != nil {
		return nil, err
	}
	if err := NewPacketInPlace(pkt, len(msg), route, dest, size); err != nil {
		return nil, err
	}
	return pkt, nil
}

// NewPacketInPlace is NewPacket for a caller that built the message where
// the packet will carry it: pkt is size.PacketLen() bytes and holds the
// msgLen bytes of message at pkt[HeaderSize+MessageOffset:]. It writes the
// integrity prefix, the padding marker and zeros around the message (bytes
// already there are overwritten), encrypts the payload in place and writes
// the header in front: the message is never copied. The packet is the one
// NewPacket would make of the same message.
func NewPacketInPlace(pkt []byte, msgLen int, route []Hop, dest Destination, size Size) error {
	payload, err := padInPlace(pkt, msgLen, size)
	if err != nil {
		return err
	}
	var h Header
	var seeds [MaxHops][32]byte
	if err := buildHeader(&h, route, &dest, &seeds); err != nil {
		return err
	}
	h.AppendBinary(pkt[:0])
	// The first hop peels the outermost layer, so it is applied last.
	for i := len(route) - 1; i >= 0; i-- {
		var lk lionessKeys
		lk.expand(&seeds[i])
		lk.encrypt(payload)
	}
	return nil
}

// newBuffer allocates a packet of size with msg at its message offset.
func newBuffer(msg []byte, size Size) ([]byte, error) {
	if !size.Valid() {
		return nil, fmt.Errorf("%w: unknown size %d", ErrBadSize, size)
	}
	if len(msg) > int(size) {
		return nil, fmt.Errorf("%w: %d bytes, capacity %d", ErrTooLarge, len(msg), int(size))
	}
	pkt := make([]byte, size.PacketLen())
	copy(pkt[HeaderSize+integritySize:], msg)
	return pkt, nil
}

// padInPlace checks pkt and writes the plaintext payload's frame around the
// msgLen bytes of message it holds: the zero integrity prefix, the 0x01
// marker and zeros to the end. It returns the payload.
func padInPlace(pkt []byte, msgLen int, size Size) ([]byte, error) {
	if !size.Valid() {
		return nil, fmt.Errorf("%w: unknown size %d", ErrBadSize, size)
	}
	if len(pkt) != size.PacketLen() {
		return nil, fmt.Errorf("%w: buffer of %d bytes for a packet of %d", ErrBadSize, len(pkt), size.PacketLen())
	}
	if msgLen < 0 || msgLen > int(size) {
		return nil, fmt.Errorf("%w: %d bytes, capacity %d", ErrTooLarge, msgLen, int(size))
	}
	payload := pkt[HeaderSize:]
	clear(payload[:integritySize])
	payload[integritySize+msgLen] = 0x01
	clear(payload[integritySize+msgLen+1:])
	return payload, nil
}
