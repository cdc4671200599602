package client

import (
	"crypto/ecdh"
	"errors"
	"fmt"
	"time"

	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/gatewire"
	"github.com/nym-go/nym/mixnet/sphinx"
)

// Capacities of one packet.
const (
	// bodyCapacity is a forward packet's envelope body: the Sphinx message
	// less the SURB-ack.
	bodyCapacity = sphinx.RegularPayload - gatewire.EnvelopeOverhead
	// sealedCapacity is the plaintext a forward body seals. It is always
	// filled (see padPlaintext), so the recipient's gateway, which sees the
	// body, cannot tell a message's length or a cover packet by size.
	sealedCapacity = bodyCapacity - SealOverhead
	// FragmentCapacity is the message data one forward packet carries:
	// 2048 − 419 (SURB-ack) − 48 (sealing) − 12 (fragment header) − 1
	// (padding marker) = 1568 bytes.
	FragmentCapacity = sealedCapacity - FragmentHeaderLen - 1
	// ReplyFragmentCapacity is the message data one reply packet (built
	// from a SURB) carries: 2048 − 12.
	ReplyFragmentCapacity = sphinx.RegularPayload - FragmentHeaderLen
)

// padPlaintext appends frag, the 0x01 marker and zeros up to sealedCapacity.
func padPlaintext(frag *Fragment) ([]byte, error) {
	b := make([]byte, 0, sealedCapacity)
	b, err := frag.AppendBinary(b)
	if err != nil {
		return nil, err
	}
	if len(b) >= sealedCapacity {
		return nil, fmt.Errorf("client: fragment of %d bytes does not fit a packet", len(b))
	}
	b = append(b, 0x01)
	return b[:sealedCapacity], nil
}

var errBadPadding = errors.New("client: bad padding")

// unpadPlaintext undoes padPlaintext; the result aliases b.
func unpadPlaintext(b []byte) ([]byte, error) {
	end := len(b) - 1
	for end >= 0 && b[end] == 0 {
		end--
	}
	if end < 0 || b[end] != 0x01 {
		return nil, errBadPadding
	}
	return b[:end], nil
}

// packetMixes lists the mixes a packet and its ack pass through, for
// nodeHealth.
type packetMixes [6]directory.Key

// builtPacket is a Send message ready for the gateway.
type builtPacket struct {
	wire   []byte
	j      *job // nil for cover and stream packets
	stream bool // a stream's packet: real, unacknowledged
	rtt    time.Duration
	mixes  packetMixes
}

// zeroID is the Destination.ID of forward packets. Acks and replies carry
// random IDs that the client looks up.
var zeroID [sphinx.IDSize]byte

// buildForward makes a forward packet that carries plaintext, sealed, to
// recipient, with a SURB-ack that comes back to us under ackID.
func (c *Client) buildForward(to Address, toKey *ecdh.PublicKey, plaintext []byte, ackID [sphinx.IDSize]byte) (*builtPacket, error) {
	fwd, err := c.router.newRoute(to.Gateway)
	if err != nil {
		return nil, err
	}
	back, err := c.router.newRoute(c.addr.Gateway)
	if err != nil {
		return nil, err
	}
	ack, err := sphinx.NewPacket(back.hops[:], sphinx.Destination{Address: c.addr.Identity, ID: ackID}, nil, sphinx.SizeAck)
	if err != nil {
		return nil, fmt.Errorf("client: ack packet: %w", err)
	}
	env := gatewire.Envelope{HasAck: true, AckParity: back.parity, AckHop: back.hops[0].Address, Ack: ack}
	body := env.Append(make([]byte, 0, sphinx.RegularPayload))
	body, err = seal(body, toKey, plaintext)
	if err != nil {
		return nil, err
	}
	pkt, err := sphinx.NewPacket(fwd.hops[:], sphinx.Destination{Address: to.Identity, ID: zeroID}, body, sphinx.SizeRegular)
	if err != nil {
		return nil, fmt.Errorf("client: packet: %w", err)
	}
	p := &builtPacket{rtt: fwd.delay + back.delay}
	p.wire = (&gatewire.Send{Parity: fwd.parity, FirstHop: fwd.hops[0].Address, Packet: pkt}).Append(nil)
	for i := range 3 {
		p.mixes[i] = fwd.hops[i].Address
		p.mixes[3+i] = back.hops[i].Address
	}
	return p, nil
}

// buildReply makes the packet for one reply fragment from a SURB.
func buildReply(s *replySURB, plaintext []byte) (*builtPacket, error) {
	pkt, err := s.surb.Packet(plaintext, sphinx.SizeRegular)
	if err != nil {
		return nil, fmt.Errorf("client: reply packet: %w", err)
	}
	return &builtPacket{wire: (&gatewire.Send{Parity: s.parity, FirstHop: s.surb.FirstHop, Packet: pkt}).Append(nil)}, nil
}

// coverPlaintext is what every loop cover packet seals: an empty fragment of
// the cover set, padded like any other.
var coverPlaintext = func() []byte {
	b, _ := padPlaintext(&Fragment{SetID: coverSetID, Count: 1})
	return b
}()

// buildCover makes a loop cover packet: a forward packet to ourselves
// through a full route, with a SURB-ack like any real packet, so that
// neither its size nor the ack coming back sets it apart. Its ack ID is
// random and matches nothing.
func (c *Client) buildCover() (*builtPacket, error) {
	var id [sphinx.IDSize]byte
	randomID(&id)
	return c.buildForward(c.addr, c.selfPub, coverPlaintext, id)
}

// newSURB makes a reply SURB routed back to us, and the keys that open what
// comes back through it.
func (c *Client) newSURB(id [sphinx.IDSize]byte) (replySURB, sphinx.ReplyKeys, error) {
	rt, err := c.router.newRoute(c.addr.Gateway)
	if err != nil {
		return replySURB{}, sphinx.ReplyKeys{}, err
	}
	s, keys, err := sphinx.NewSURB(rt.hops[:], sphinx.Destination{Address: c.addr.Identity, ID: id})
	if err != nil {
		return replySURB{}, sphinx.ReplyKeys{}, fmt.Errorf("client: SURB: %w", err)
	}
	return replySURB{parity: rt.parity, surb: s}, keys, nil
}

// buildForwardStream makes the packet of a forward stream from what its
// source wrote into p: a repliable message, our tag and p's SURBs, in one
// unacknowledged fragment.
func (c *Client) buildForwardStream(s *Stream, p *Payload) (*builtPacket, error) {
	surbs, err := c.makeSURBs(p.nSURBs, s.tag)
	if err != nil {
		return nil, err
	}
	m := message{kind: kindRepliable, tag: s.tag, surbs: surbs, data: p.data()}
	body, err := m.appendBinary(make([]byte, 0, m.headerLen()+len(m.data)))
	if err != nil {
		return nil, err
	}
	pt, err := padPlaintext(&Fragment{SetID: c.newSetID(), Count: 1, Data: body})
	if err != nil {
		return nil, err
	}
	var ackID [sphinx.IDSize]byte
	randomID(&ackID)
	return c.buildForward(s.to, s.toKey, pt, ackID)
}

// buildReplyStream makes the packet of a reply stream from what its source
// wrote into p, through surb.
func (c *Client) buildReplyStream(surb *replySURB, p *Payload) (*builtPacket, error) {
	m := message{kind: kindReply, data: p.data()}
	body, err := m.appendBinary(make([]byte, 0, m.headerLen()+len(m.data)))
	if err != nil {
		return nil, err
	}
	f := Fragment{SetID: c.newSetID(), Count: 1, Data: body}
	pt, err := f.AppendBinary(make([]byte, 0, FragmentHeaderLen+len(body)))
	if err != nil {
		return nil, err
	}
	return buildReply(surb, pt)
}
