// Package gatewire defines the messages a client and its gateway exchange
// inside link frames of kind KindClient. The Noise handshake of the link has
// already authenticated the client by its static key, which is also its
// address in the network. That key is not a credential: a gateway that
// requires tickets is paid by Ticket messages (see ticket.go), which carry an
// anonymous ticket and never the client's identity.
//
// Every message starts with a one-byte type:
//
//	Send      1  client → gateway  parity u8 ‖ first hop [32] ‖ Sphinx packet
//	Deliver   2  gateway → client  seq u64 ‖ id [16] ‖ payload
//	Received  3  client → gateway  seq u64: everything up to seq may be forgotten
//	Status    4  gateway → client  code u8 ‖ UTF-8 text (≤ 512 bytes)
//	Ticket    5  client → gateway  a ticket.Spend (≤ MaxSpendLen bytes)
//	Quota     6  gateway → client  flags u8 ‖ bytes left u64
//	Shape     7  both ways         interval µs u32 ‖ frame length u32 (shape.go)
//	Slot      8  gateway → client  (length u16 ‖ message)* ‖ zero padding (shape.go)
package gatewire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/nym-go/nym/mixnet/sphinx"
)

// Type is a message's first byte.
type Type uint8

// The message types.
const (
	TypeSend     Type = 1
	TypeDeliver  Type = 2
	TypeReceived Type = 3
	TypeStatus   Type = 4
	TypeTicket   Type = 5
	TypeQuota    Type = 6
)

// ErrMalformed is returned, wrapped, for any message that does not parse.
var ErrMalformed = errors.New("gatewire: malformed message")

// MaxStatusText bounds a status message's text.
const MaxStatusText = 512

// SendHeaderLen is what a Send message puts before its packet: type,
// parity and first hop. A client that builds the packet in place reserves it.
const SendHeaderLen = 1 + 1 + sphinx.AddressSize

// Send asks the gateway to put a Sphinx packet on the mixnet, unchanged, to
// its first hop. The gateway does not unwrap it.
type Send struct {
	Parity   uint8 // key-rotation parity of the first hop's key
	FirstHop [sphinx.AddressSize]byte
	Packet   []byte // a regular or ack packet
}

// Deliver hands the client a payload that arrived for it, with the
// identifier from the last routing block. Seq numbers a client's deliveries
// so that stored messages can be acknowledged and never lost.
type Deliver struct {
	Seq     uint64
	ID      [sphinx.IDSize]byte
	Payload []byte
}

// Received tells the gateway the client holds every delivery up to Seq.
type Received struct {
	Seq uint64
}

// Status codes.
const (
	StatusOK          uint8 = 0
	StatusRefused     uint8 = 1 // a limit was hit; Text says which
	StatusBadMessage  uint8 = 2 // the client sent something malformed
	StatusUnavailable uint8 = 3 // the gateway cannot serve now (e.g. no topology)
	// StatusNoTicket: the gateway requires tickets and the client has not
	// shown a valid one, or its quota ran out. Text says why and what to do.
	StatusNoTicket uint8 = 4
)

// Status is the gateway's word on something, most often a refusal.
type Status struct {
	Code uint8
	Text string
}

// AppendBinary methods write the message, type byte first. They cannot
// fail, so unlike encoding.BinaryAppender they return no error.

// AppendBinary appends the wire form of m.
func (m *Send) AppendBinary(b []byte) []byte {
	return append(m.AppendHeader(b), m.Packet...)
}

// AppendHeader appends the SendHeaderLen bytes of m that come before its
// packet: for a client that builds the packet in place behind them.
func (m *Send) AppendHeader(b []byte) []byte {
	b = append(b, byte(TypeSend), m.Parity&1)
	return append(b, m.FirstHop[:]...)
}

// AppendBinary appends the wire form of m.
func (m *Deliver) AppendBinary(b []byte) []byte {
	b = append(b, byte(TypeDeliver))
	b = binary.BigEndian.AppendUint64(b, m.Seq)
	b = append(b, m.ID[:]...)
	return append(b, m.Payload...)
}

// AppendBinary appends the wire form of m.
func (m *Received) AppendBinary(b []byte) []byte {
	return binary.BigEndian.AppendUint64(append(b, byte(TypeReceived)), m.Seq)
}

// AppendBinary appends the wire form of m; over-long text is cut at a rune
// boundary.
func (m *Status) AppendBinary(b []byte) []byte {
	text := m.Text
	for len(text) > MaxStatusText {
		_, size := utf8.DecodeLastRuneInString(text)
		text = text[:len(text)-size]
	}
	return append(append(b, byte(TypeStatus), m.Code), text...)
}

// Parse decodes one message: a *Send, *Deliver, *Received, *Status, *Ticket,
// *Quota, *Shape or *Slot. Byte slices in the result alias b.
func Parse(b []byte) (any, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrMalformed)
	}
	body := b[1:]
	switch Type(b[0]) {
	case TypeSend:
		const head = 1 + sphinx.AddressSize
		if len(body) < head || body[0] > 1 {
			return nil, fmt.Errorf("%w: send header", ErrMalformed)
		}
		m := &Send{Parity: body[0], Packet: body[head:]}
		copy(m.FirstHop[:], body[1:head])
		if n := len(m.Packet); n != sphinx.RegularPacketSize && n != sphinx.AckPacketSize && n != sphinx.ExtendedPacketSize {
			return nil, fmt.Errorf("%w: packet of %d bytes", ErrMalformed, n)
		}
		return m, nil
	case TypeDeliver:
		const head = 8 + sphinx.IDSize
		if len(body) < head {
			return nil, fmt.Errorf("%w: deliver header", ErrMalformed)
		}
		m := &Deliver{Seq: binary.BigEndian.Uint64(body), Payload: body[head:]}
		copy(m.ID[:], body[8:head])
		return m, nil
	case TypeReceived:
		if len(body) != 8 {
			return nil, fmt.Errorf("%w: received is %d bytes", ErrMalformed, len(b))
		}
		return &Received{Seq: binary.BigEndian.Uint64(body)}, nil
	case TypeStatus:
		if len(body) < 1 || len(body)-1 > MaxStatusText || !utf8.Valid(body[1:]) {
			return nil, fmt.Errorf("%w: status", ErrMalformed)
		}
		return &Status{Code: body[0], Text: string(body[1:])}, nil
	case TypeTicket:
		return parseTicket(body)
	case TypeQuota:
		return parseQuota(body)
	case TypeShape:
		return parseShape(body)
	case TypeSlot:
		return parseSlot(body)
	}
	return nil, fmt.Errorf("%w: unknown type %d", ErrMalformed, b[0])
}
