package client

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/nym-go/nym/mixnet/sphinx"
)

// A reassembled message starts with a kind byte:
//
//	1 plain         data…
//	2 repliable     tag 16 ‖ n u16 ‖ n × reply SURB ‖ data…   (n ≥ 0)
//	3 more SURBs    tag 16 ‖ n u16 ‖ n × reply SURB          (n ≥ 1, nothing after)
//	4 reply         data…                                    (only through our SURBs)
//	5 SURB request  n u16                                    (only through our SURBs)
//
// A reply SURB is a flags byte then the 412-byte sphinx.SURB. Bit 0 is the
// key-rotation parity of its first hop's key; bit 1 (surbExtended) says the
// reply goes in an extended packet (sphinx.SizeExtended): the SURB's maker
// fixes its reply's size class, and the replier fills what it is given.
// Other bits are zero. Kinds 1–3 arrive sealed on the
// forward path; 4 and 5 arrive through SURBs we made, which say whose they are.
//
// A repliable message may carry no SURBs (n = 0): it still names its sender
// by tag, so the recipient can tie it to a session and answer through SURBs
// given earlier, at 19 bytes of header rather than 19 + 413 per SURB
// (SendRepliablePacket). Receivers have always accepted n = 0, so this
// needs no new kind.
type messageKind uint8

const (
	kindPlain       messageKind = 1
	kindRepliable   messageKind = 2
	kindMoreSURBs   messageKind = 3
	kindReply       messageKind = 4
	kindSURBRequest messageKind = 5
)

// replySURBSize is one reply SURB in a message.
const replySURBSize = 1 + sphinx.SURBSize

// maxSURBsPerMessage bounds the SURBs one message may carry, whatever its
// length claims.
const maxSURBsPerMessage = 2000

// ErrBadMessage is wrapped by every message decoding error.
var ErrBadMessage = errors.New("client: malformed message")

// surbExtended is the flags bit of a SURB whose reply is an extended packet.
const surbExtended = 1 << 1

// replySURB is a SURB as a sender hands it out.
type replySURB struct {
	parity   uint8
	extended bool // the reply is a sphinx.SizeExtended packet
	surb     sphinx.SURB
}

// size is the packet size of the reply s carries.
func (s *replySURB) size() sphinx.Size {
	if s.extended {
		return sphinx.SizeExtended
	}
	return sphinx.SizeRegular
}

// flags is the byte that goes in front of s on the wire.
func (s *replySURB) flags() byte {
	f := s.parity & 1
	if s.extended {
		f |= surbExtended
	}
	return f
}

type message struct {
	kind  messageKind
	tag   AnonymousSenderTag // kinds 2, 3
	surbs []replySURB        // kinds 2, 3
	want  uint16             // kind 5
	data  []byte             // kinds 1, 2, 4
}

// headerLen is how many bytes m adds before its data.
func (m *message) headerLen() int {
	switch m.kind {
	case kindRepliable, kindMoreSURBs:
		return 1 + 16 + 2 + len(m.surbs)*replySURBSize
	case kindSURBRequest:
		return 1 + 2
	}
	return 1
}

func (m *message) appendBinary(b []byte) ([]byte, error) {
	b, err := m.appendHeader(b)
	if err != nil {
		return b, err
	}
	switch m.kind {
	case kindPlain, kindRepliable, kindReply:
		return append(b, m.data...), nil
	}
	return b, nil
}

// appendHeader appends what comes before m's data: all of m for the kinds
// without data. headerLen bytes.
func (m *message) appendHeader(b []byte) ([]byte, error) {
	b = append(b, byte(m.kind))
	switch m.kind {
	case kindPlain, kindReply:
	case kindRepliable, kindMoreSURBs:
		if len(m.surbs) > maxSURBsPerMessage || (m.kind == kindMoreSURBs && len(m.surbs) == 0) {
			return b, fmt.Errorf("%w: %d SURBs", ErrBadMessage, len(m.surbs))
		}
		b = append(b, m.tag[:]...)
		b = binary.BigEndian.AppendUint16(b, uint16(len(m.surbs)))
		for i := range m.surbs {
			b = append(b, m.surbs[i].flags())
			b, _ = m.surbs[i].surb.AppendBinary(b)
		}
	case kindSURBRequest:
		b = binary.BigEndian.AppendUint16(b, m.want)
	default:
		return b, fmt.Errorf("%w: kind %d", ErrBadMessage, m.kind)
	}
	return b, nil
}

// parseMessage decodes a reassembled message. Slices in the result alias b.
func parseMessage(b []byte) (*message, error) {
	if len(b) < 1 {
		return nil, fmt.Errorf("%w: empty", ErrBadMessage)
	}
	m := &message{kind: messageKind(b[0])}
	rest := b[1:]
	switch m.kind {
	case kindPlain, kindReply:
		m.data = rest
		return m, nil
	case kindSURBRequest:
		if len(rest) != 2 {
			return nil, fmt.Errorf("%w: SURB request of %d bytes", ErrBadMessage, len(rest))
		}
		m.want = binary.BigEndian.Uint16(rest)
		return m, nil
	case kindRepliable, kindMoreSURBs:
	default:
		return nil, fmt.Errorf("%w: unknown kind %d", ErrBadMessage, m.kind)
	}
	if len(rest) < 16+2 {
		return nil, fmt.Errorf("%w: %d bytes, too short for a sender tag", ErrBadMessage, len(b))
	}
	copy(m.tag[:], rest)
	if m.tag.IsZero() {
		return nil, fmt.Errorf("%w: zero sender tag", ErrBadMessage)
	}
	n := int(binary.BigEndian.Uint16(rest[16:]))
	rest = rest[18:]
	if n > maxSURBsPerMessage || n*replySURBSize > len(rest) {
		return nil, fmt.Errorf("%w: %d SURBs claimed, %d bytes left", ErrBadMessage, n, len(rest))
	}
	if m.kind == kindMoreSURBs && (n == 0 || n*replySURBSize != len(rest)) {
		return nil, fmt.Errorf("%w: %d SURBs in %d bytes", ErrBadMessage, n, len(rest))
	}
	m.surbs = make([]replySURB, n)
	for i := range m.surbs {
		p := rest[i*replySURBSize:]
		if p[0]&^(1|surbExtended) != 0 {
			return nil, fmt.Errorf("%w: SURB %d flags %#x", ErrBadMessage, i, p[0])
		}
		m.surbs[i].parity = p[0] & 1
		m.surbs[i].extended = p[0]&surbExtended != 0
		if err := m.surbs[i].surb.UnmarshalBinary(p[1:replySURBSize]); err != nil {
			return nil, fmt.Errorf("%w: SURB %d: %v", ErrBadMessage, i, err)
		}
	}
	if m.kind == kindRepliable {
		m.data = rest[n*replySURBSize:]
	}
	return m, nil
}
