package wgreg

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Type is a link message's first byte.
type Type uint8

// The link message types (see the package documentation).
const (
	TypeRegister Type = 1
	TypeRelay    Type = 2
	TypeForward  Type = 3
	TypeReply    Type = 4
	TypeError    Type = 5
)

// Size limits. They bound what a stranger can make a gateway parse.
const (
	// MaxSpend bounds a ticket Spend carried in a request.
	MaxSpend = 4096
	// MaxErrorText bounds an Error's text.
	MaxErrorText = 256
	// MaxSealed bounds a sealed request or reply.
	MaxSealed = 8 + EncSize + requestFixedLen + MaxSpend + sealOverhead
	// MaxMessage bounds any link message of this package.
	MaxMessage = 1 + 4 + 32 + MaxSealed
)

// ErrMalformed is returned, wrapped, for anything that does not parse.
var ErrMalformed = errors.New("wgreg: malformed message")

// Register asks a gateway for a WireGuard peer; Sealed is a request sealed
// to that gateway (SealRequest).
type Register struct {
	ID     uint32
	Sealed []byte
}

// Relay asks an entry to pass Sealed, a request sealed to the exit named by
// Exit (its identity key), on to that exit and to return its reply.
type Relay struct {
	ID     uint32
	Exit   [32]byte
	Sealed []byte
}

// Forward is a relayed request as the entry hands it to the exit.
type Forward struct {
	ID     uint32
	Sealed []byte
}

// Reply answers a Register, Relay or Forward with a sealed reply (see
// Reply in seal.go) that only the client can open.
type Reply struct {
	ID     uint32
	Sealed []byte
}

// Error codes.
const (
	ErrCodeMalformed   uint8 = 1 // the message did not parse or open
	ErrCodeRefused     uint8 = 2 // refused before opening: not this gateway's role, a limit
	ErrCodeUnavailable uint8 = 3 // cannot serve now: unknown exit, exit unreachable
)

// Error is a gateway's refusal that cannot be sealed (the request did not
// open, or never reached the gateway that could open it).
type Error struct {
	ID   uint32
	Code uint8
	Text string
}

// AppendBinary appends m's wire form.
func (m *Register) AppendBinary(b []byte) ([]byte, error) {
	if err := checkSealed(m.Sealed); err != nil {
		return b, err
	}
	b = binary.BigEndian.AppendUint32(append(b, byte(TypeRegister)), m.ID)
	return append(b, m.Sealed...), nil
}

// AppendBinary appends m's wire form.
func (m *Relay) AppendBinary(b []byte) ([]byte, error) {
	if err := checkSealed(m.Sealed); err != nil {
		return b, err
	}
	b = binary.BigEndian.AppendUint32(append(b, byte(TypeRelay)), m.ID)
	b = append(b, m.Exit[:]...)
	return append(b, m.Sealed...), nil
}

// AppendBinary appends m's wire form.
func (m *Forward) AppendBinary(b []byte) ([]byte, error) {
	if err := checkSealed(m.Sealed); err != nil {
		return b, err
	}
	b = binary.BigEndian.AppendUint32(append(b, byte(TypeForward)), m.ID)
	return append(b, m.Sealed...), nil
}

// AppendBinary appends m's wire form.
func (m *Reply) AppendBinary(b []byte) ([]byte, error) {
	if err := checkSealed(m.Sealed); err != nil {
		return b, err
	}
	b = binary.BigEndian.AppendUint32(append(b, byte(TypeReply)), m.ID)
	return append(b, m.Sealed...), nil
}

// AppendBinary appends m's wire form; over-long text is cut at a rune
// boundary, invalid UTF-8 replaced.
func (m *Error) AppendBinary(b []byte) ([]byte, error) {
	text := cutText(m.Text)
	b = binary.BigEndian.AppendUint32(append(b, byte(TypeError)), m.ID)
	return append(append(b, m.Code), text...), nil
}

func cutText(s string) string {
	s = string([]rune(s)) // replaces invalid UTF-8
	for len(s) > MaxErrorText {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	return s
}

func sealedMsg(m any, sealed []byte) (any, error) {
	if err := checkSealed(sealed); err != nil {
		return nil, err
	}
	return m, nil
}

func checkSealed(s []byte) error {
	if len(s) == 0 || len(s) > MaxSealed {
		return fmt.Errorf("%w: sealed part of %d bytes (1..%d)", ErrMalformed, len(s), MaxSealed)
	}
	return nil
}

// Parse decodes one link message: a *Register, *Relay, *Forward, *Reply or
// *Error. Byte slices in the result alias b.
func Parse(b []byte) (any, error) {
	if len(b) > MaxMessage {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrMalformed, len(b), MaxMessage)
	}
	if len(b) < 5 {
		return nil, fmt.Errorf("%w: %d bytes, too short", ErrMalformed, len(b))
	}
	id, body := binary.BigEndian.Uint32(b[1:5]), b[5:]
	switch Type(b[0]) {
	case TypeRegister:
		return sealedMsg(&Register{ID: id, Sealed: body}, body)
	case TypeRelay:
		if len(body) < 32 {
			return nil, fmt.Errorf("%w: relay without exit", ErrMalformed)
		}
		m := &Relay{ID: id, Sealed: body[32:]}
		copy(m.Exit[:], body)
		return sealedMsg(m, m.Sealed)
	case TypeForward:
		return sealedMsg(&Forward{ID: id, Sealed: body}, body)
	case TypeReply:
		return sealedMsg(&Reply{ID: id, Sealed: body}, body)
	case TypeError:
		if len(body) < 1 || len(body)-1 > MaxErrorText || !utf8.Valid(body[1:]) {
			return nil, fmt.Errorf("%w: error message", ErrMalformed)
		}
		return &Error{ID: id, Code: body[0], Text: string(body[1:])}, nil
	}
	return nil, fmt.Errorf("%w: unknown type %d", ErrMalformed, b[0])
}
