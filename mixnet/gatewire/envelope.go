package gatewire

import (
	"fmt"

	"github.com/nym-go/nym/mixnet/sphinx"
)

// Envelope is the plaintext of a forward packet's payload, as
// sphinx.OpenPayload returns it at the last hop. The gateway there reads only
// the flags and the SURB-ack: it sends the ack back into the mixnet at once,
// which tells the sender the packet arrived, and hands the whole payload to
// its client. The body is the client's business (end-to-end encrypted).
//
//	flags     1  bit 0: a SURB-ack follows; bit 1: the ack's key-rotation parity
//	ack hop  32  (with a SURB-ack) the ack packet's first hop
//	ack     386  (with a SURB-ack) a complete ack packet, routed back to the sender
//	body     …
type Envelope struct {
	HasAck    bool
	AckParity uint8
	AckHop    [sphinx.AddressSize]byte
	Ack       []byte // sphinx.AckPacketSize bytes
	Body      []byte
}

// Envelope flag bits.
const (
	envelopeHasAck    = 1 << 0
	envelopeAckParity = 1 << 1
)

// EnvelopeOverhead is what an envelope with a SURB-ack adds to its body.
const EnvelopeOverhead = 1 + sphinx.AddressSize + sphinx.AckPacketSize

// AppendBinary appends the envelope's wire form to b. It cannot fail, so
// unlike encoding.BinaryAppender it returns no error.
func (e *Envelope) AppendBinary(b []byte) []byte {
	b = e.AppendHeader(b)
	if e.HasAck {
		b = append(b, e.Ack...)
	}
	return append(b, e.Body...)
}

// AppendHeader appends what comes before the ack packet: the flags and,
// with a SURB-ack, its first hop. A client that builds the ack packet and
// the body in place behind it writes only this.
func (e *Envelope) AppendHeader(b []byte) []byte {
	var flags byte
	if e.HasAck {
		flags |= envelopeHasAck
		if e.AckParity&1 == 1 {
			flags |= envelopeAckParity
		}
	}
	b = append(b, flags)
	if e.HasAck {
		b = append(b, e.AckHop[:]...)
	}
	return b
}

// ParseEnvelope decodes an envelope; slices alias b.
func ParseEnvelope(b []byte) (*Envelope, error) {
	if len(b) < 1 || b[0]&^(envelopeHasAck|envelopeAckParity) != 0 {
		return nil, fmt.Errorf("%w: envelope flags", ErrMalformed)
	}
	e := &Envelope{}
	rest := b[1:]
	if b[0]&envelopeHasAck != 0 {
		if len(rest) < sphinx.AddressSize+sphinx.AckPacketSize {
			return nil, fmt.Errorf("%w: envelope too short for its ack", ErrMalformed)
		}
		e.HasAck = true
		if b[0]&envelopeAckParity != 0 {
			e.AckParity = 1
		}
		copy(e.AckHop[:], rest)
		e.Ack = rest[sphinx.AddressSize : sphinx.AddressSize+sphinx.AckPacketSize]
		rest = rest[sphinx.AddressSize+sphinx.AckPacketSize:]
	} else if b[0]&envelopeAckParity != 0 {
		return nil, fmt.Errorf("%w: ack parity without an ack", ErrMalformed)
	}
	e.Body = rest
	return e, nil
}
