package client

import (
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
	// done is the link.Frame.Done to hand the packet over with; nil is
	// releaseWire.
	done  func([]byte)
	rtt   time.Duration
	mixes packetMixes
}

// zeroID is the Destination.ID of forward packets. Acks and replies carry
// random IDs that the client looks up.
var zeroID [sphinx.IDSize]byte

// buildForward makes a forward packet that carries plaintext (padded,
// sealedCapacity bytes), sealed, to `to`, with a SURB-ack that comes
// back to us under ackID. It copies plaintext into a packet buffer; streams
// write theirs in place and call finishForward.
func (c *Client) buildForward(to Address, plaintext []byte, ackID [sphinx.IDSize]byte) (*builtPacket, error) {
	if len(plaintext) != sealedCapacity {
		return nil, fmt.Errorf("client: plaintext of %d bytes, want %d", len(plaintext), sealedCapacity)
	}
	w := newWireBuffer()
	copy(w[fwdPlainOff:], plaintext)
	p := new(builtPacket)
	return p, c.finishForward(p, w, to, ackID)
}

// finishForward completes the forward packet in w (see wire.go), whose
// padded plaintext is in place: it writes the envelope's head and the
// SURB-ack packet where they travel, seals the plaintext in place, applies
// the Sphinx layers in place and writes the Sphinx header and the Send
// header into the headroom. No byte of the plaintext moves. The result goes
// to p.
func (c *Client) finishForward(p *builtPacket, w []byte, to Address, ackID [sphinx.IDSize]byte) error {
	fwd, err := c.routes.newRoute(to.Gateway)
	if err != nil {
		return err
	}
	back, err := c.routes.newRoute(c.addr.Gateway)
	if err != nil {
		return err
	}
	env := gatewire.Envelope{HasAck: true, AckParity: back.parity, AckHop: back.hops[0].Address}
	env.AppendHeader(w[msgOff:msgOff])
	ack := w[fwdSealedOff-sphinx.AckPacketSize : fwdSealedOff]
	if err := sphinx.NewPacketInPlace(ack, 0, back.hops[:], sphinx.Destination{Address: c.addr.Identity, ID: ackID}, sphinx.SizeAck); err != nil {
		return fmt.Errorf("client: ack packet: %w", err)
	}
	if err := sealInPlace(w[fwdSealedOff:msgOff+sphinx.RegularPayload], (*[32]byte)(&to.Identity)); err != nil {
		return err
	}
	if err := sphinx.NewPacketInPlace(w[packetOff:], sphinx.RegularPayload, fwd.hops[:], sphinx.Destination{Address: to.Identity, ID: zeroID}, sphinx.SizeRegular); err != nil {
		return fmt.Errorf("client: packet: %w", err)
	}
	(&gatewire.Send{Parity: fwd.parity, FirstHop: fwd.hops[0].Address}).AppendHeader(w[:0])
	*p = builtPacket{wire: w, rtt: fwd.delay + back.delay}
	for i := range 3 {
		p.mixes[i] = fwd.hops[i].Address
		p.mixes[3+i] = back.hops[i].Address
	}
	return nil
}

// buildReply makes the packet for one reply fragment from a SURB, copying
// plaintext into a packet buffer; streams write theirs in place and call
// finishReply.
func buildReply(s *replySURB, plaintext []byte) (*builtPacket, error) {
	if len(plaintext) > int(s.size()) {
		return nil, fmt.Errorf("client: reply of %d bytes, capacity %d", len(plaintext), int(s.size()))
	}
	w := newWireBufferOf(s.size())
	copy(w[replyPlainOff:], plaintext)
	p := new(builtPacket)
	return p, finishReply(p, w, s, len(plaintext))
}

// finishReply completes the reply packet in w, whose first msgLen bytes of
// message are in place, into p. w is the buffer of s's size
// (newWireBufferOf).
func finishReply(p *builtPacket, w []byte, s *replySURB, msgLen int) error {
	if err := s.surb.PacketInPlace(w[packetOff:], msgLen, s.size()); err != nil {
		return fmt.Errorf("client: reply packet: %w", err)
	}
	(&gatewire.Send{Parity: s.parity, FirstHop: s.surb.FirstHop}).AppendHeader(w[:0])
	*p = builtPacket{wire: w}
	return nil
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
	return c.buildForward(c.addr, coverPlaintext, id)
}

// newSURB makes a reply SURB routed back to us, and the keys that open what
// comes back through it.
func (c *Client) newSURB(id [sphinx.IDSize]byte) (replySURB, sphinx.ReplyKeys, error) {
	rt, err := c.routes.newRoute(c.addr.Gateway)
	if err != nil {
		return replySURB{}, sphinx.ReplyKeys{}, err
	}
	s, keys, err := sphinx.NewSURB(rt.hops[:], sphinx.Destination{Address: c.addr.Identity, ID: id})
	if err != nil {
		return replySURB{}, sphinx.ReplyKeys{}, fmt.Errorf("client: SURB: %w", err)
	}
	return replySURB{parity: rt.parity, extended: c.cfg.Loopix.ExtendedReplies, surb: s}, keys, nil
}

// buildExtendedCover makes a loop cover packet of the extended size: a
// reply to ourselves through a SURB we make for it and keep no keys of, so
// that at every mix it looks like the replies it hides (same size, same
// kind of header), and our gateway hands it back under an ID that matches
// nothing. It is what keeps extended packets from being only replies.
func (c *Client) buildExtendedCover() (*builtPacket, error) {
	var id [sphinx.IDSize]byte
	randomID(&id)
	rt, err := c.routes.newRoute(c.addr.Gateway)
	if err != nil {
		return nil, err
	}
	s, _, err := sphinx.NewSURB(rt.hops[:], sphinx.Destination{Address: c.addr.Identity, ID: id})
	if err != nil {
		return nil, fmt.Errorf("client: cover SURB: %w", err)
	}
	rs := replySURB{parity: rt.parity, extended: true, surb: s}
	w := newWireBufferOf(sphinx.SizeExtended)
	p := new(builtPacket)
	return p, finishReply(p, w, &rs, 0)
}

// buildForwardStream completes the packet of a forward stream, whose
// source wrote its data in place: the fragment and message headers (our
// tag, p's SURBs) go in front of the data, the padding behind it. The
// result goes to dst.
func (c *Client) buildForwardStream(dst *builtPacket, s *Stream, p *Payload) error {
	surbs, err := c.makeSURBs(p.nSURBs, s.tag)
	if err != nil {
		return err
	}
	pt := p.buf[fwdPlainOff : fwdPlainOff+sealedCapacity]
	f := Fragment{SetID: c.newSetID(), Count: 1}
	if _, err := f.appendHeader(pt[:0]); err != nil {
		return err
	}
	m := message{kind: kindRepliable, tag: s.tag, surbs: surbs}
	if _, err := m.appendHeader(pt[FragmentHeaderLen:FragmentHeaderLen]); err != nil {
		return err
	}
	end := FragmentHeaderLen + m.headerLen() + p.n
	pt[end] = 0x01
	clear(pt[end+1:])
	var ackID [sphinx.IDSize]byte
	randomID(&ackID)
	return c.finishForward(dst, p.buf, s.to, ackID)
}

// buildReplyStream completes the packet of a reply stream, whose source
// wrote its data in place, through surb, into dst.
func (c *Client) buildReplyStream(dst *builtPacket, surb *replySURB, p *Payload) error {
	f := Fragment{SetID: c.newSetID(), Count: 1}
	if _, err := f.appendHeader(p.buf[replyPlainOff:replyPlainOff]); err != nil {
		return err
	}
	m := message{kind: kindReply}
	if _, err := m.appendHeader(p.buf[replyPlainOff+FragmentHeaderLen : replyPlainOff+FragmentHeaderLen]); err != nil {
		return err
	}
	return finishReply(dst, p.buf, surb, FragmentHeaderLen+m.headerLen()+p.n)
}
