package sphinx

import (
	"errors"
	"fmt"
	"time"
)

// ErrReplay is ProcessOnce's refusal of a packet whose replay tag its filter
// has seen.
var ErrReplay = errors.New("sphinx: replayed packet")

// A ReplayFilter remembers the replay tags seen under one key
// (*replay.Filter is one). Seen reports whether tag was recorded before and
// records it; of any number of calls with one tag, at most one reports false.
type ReplayFilter interface {
	Seen(tag [32]byte) bool
}

// Processed is what a node learns from one packet.
type Processed struct {
	// Final is true when this node is the last hop.
	Final bool
	// NextHop and Delay tell a forwarding node where to send Packet and how
	// long to hold it first.
	NextHop [AddressSize]byte
	Delay   time.Duration
	// Packet is the packet for the next hop: the caller's buffer, rewritten.
	Packet []byte
	// Destination and Payload are set at the last hop. Payload is a sub-slice
	// of the caller's buffer with this hop's layer removed; its recipient
	// opens it with OpenPayload (forward packets) or ReplyKeys.Open (replies).
	Destination Destination
	Payload     []byte
	// ReplayTag is the same for every copy of a packet under one key. A node
	// drops a packet whose tag it has seen.
	ReplayTag [32]byte
}

// Process removes this node's layer from pkt, in place. On error pkt is left
// untouched, and nothing about the packet is returned but the error.
//
// Cost: two ladders for a forwarding hop (the shared secret and the blinding
// of α), one for a final hop, plus ~10 µs of symmetric work on a regular
// packet. It allocates only the payload cipher's two 32-byte ChaCha20 states
// (the price of its assembly, see lioness.go); ProcessOnce refusing a replay
// allocates nothing.
//
// Process checks no replay tag: a node uses ProcessOnce.
func (k *PrivateKey) Process(pkt []byte) (Processed, error) {
	return k.ProcessOnce(pkt, nil)
}

// ProcessOnce is Process with the replay check done inside it: a packet whose
// tag seen reports as seen is refused with ErrReplay, and its tag is recorded
// otherwise. The check comes as soon as the tag is known to be the packet's
// (the header MAC verified), before the payload cipher and the blinding of α,
// so a replayed packet costs one ladder and a few hashes where a fresh one
// costs two ladders and the payload cipher. A nil seen checks nothing.
//
// A packet refused after the check (a bad routing block) keeps its tag in the
// filter: only its sender could have made it, and a copy would be refused
// anyway.
func (k *PrivateKey) ProcessOnce(pkt []byte, seen ReplayFilter) (Processed, error) {
	if _, ok := sizeOf(len(pkt)); !ok {
		return Processed{}, fmt.Errorf("%w: %d bytes", ErrBadSize, len(pkt))
	}
	alpha := (*[GroupElement]byte)(pkt[:GroupElement])
	gamma := pkt[GroupElement : GroupElement+MACSize]
	beta := pkt[GroupElement+MACSize : HeaderSize]
	payload := pkt[HeaderSize:]

	if err := checkPoint(alpha); err != nil {
		return Processed{}, err
	}
	var s [32]byte
	if err := sharedSecret(&s, &k.scalar, alpha); err != nil {
		return Processed{}, err
	}
	var keys hopKeys
	deriveHopKeys(&keys, &s)

	var mac [MACSize]byte
	headerMAC(&mac, &keys.mac, beta)
	if !macEqual(mac[:], gamma) {
		return Processed{}, ErrBadMAC
	}
	// The tag is recorded only now. It depends on α alone, and α is known
	// to whoever handed us the packet (the previous hop computed it):
	// recorded before the MAC, α followed by garbage, sent ahead of the real
	// packet, would make us drop the real one as a replay, and random α
	// would fill the filter for one ladder each. A valid MAC needs the shared secret, which only the
	// sender has, so past this point the tag belongs to a packet its sender
	// built, and a second copy of that packet is a replay.
	if seen != nil && seen.Seen(keys.replay) {
		return Processed{}, ErrReplay
	}

	var b [streamLen]byte
	headerStream(&b, &keys.header)
	for i := range beta {
		b[i] ^= beta[i]
	}
	var blk routingBlock
	if err := blk.unmarshal(b[:BlockSize]); err != nil {
		return Processed{}, err
	}

	var lk lionessKeys
	lk.expand(&keys.payload)
	lk.decrypt(payload)

	p := Processed{ReplayTag: keys.replay}
	if blk.Flag == flagFinal {
		p.Final = true
		p.Destination = Destination{Address: blk.Address, ID: blk.ID}
		p.Payload = payload
		return p, nil
	}

	_, bk := blindingScalar(&keys.blinding)
	var next [GroupElement]byte
	if err := ladder(&next, &bk, alpha); err != nil {
		return Processed{}, fmt.Errorf("%w: blinding: %v", ErrBadPoint, err) // unreachable: α was checked
	}
	*alpha = next
	copy(gamma, blk.MAC[:])
	copy(beta, b[BlockSize:])
	p.NextHop = blk.Address
	p.Delay = blk.delay()
	p.Packet = pkt
	return p, nil
}
