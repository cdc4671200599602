package gatewire

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/nym-go/nym/mixnet/sphinx"
)

// Downstream shaping. A gateway pushes to its client whatever arrives for
// it, so a watcher of the client's link would see when, and how much, it
// downloads. A client that asks with Shape gets instead a constant-rate
// stream: one Slot frame every Interval, every one FrameLen bytes long,
// carrying waiting messages when there are some and nothing (cover) when
// not. The link is encrypted, so an observer sees the same frames either
// way.
//
//	Shape  7  both ways  interval µs u32 ‖ frame length u32
//	Slot   8  gateway → client  (length u16 ‖ message)* ‖ zero padding
//
// The client's Shape asks; the gateway answers with a Shape saying what it
// granted (a longer interval where its operator caps the rate). Interval 0
// asks for the unshaped push. A Slot's entries are whole messages of the
// other types (never a Slot); a zero length, or fewer than two bytes left,
// ends them, and the rest must be zero.
const (
	TypeShape Type = 7
	TypeSlot  Type = 8
)

// DeliverHeaderLen is what a Deliver message adds to its payload.
const DeliverHeaderLen = 1 + 8 + sphinx.IDSize

// slotEntryHeader is the length before each message in a Slot.
const slotEntryHeader = 2

// MinSlotLen is the shortest frame a gateway pads to: a Slot holding a
// Deliver of a regular packet's payload (every message of the other types
// is shorter).
var MinSlotLen = SlotLen(sphinx.RegularPacketSize)

// MaxSlotLen bounds the frame length a client may ask for; it stays inside
// one link frame.
const MaxSlotLen = 60 << 10

// SlotLen is the frame length that holds a Deliver of the payload of a
// packet of packetLen bytes: the frame length a client asks for when
// packetLen is the largest packet that reaches it.
func SlotLen(packetLen int) int {
	return 1 + slotEntryHeader + DeliverHeaderLen + packetLen - sphinx.HeaderSize
}

// Shape asks for (client → gateway) or grants (gateway → client) a
// constant-rate downstream.
type Shape struct {
	// Interval is the time between two Slots; zero means unshaped.
	// Carried in whole microseconds, at most about 71 minutes.
	Interval time.Duration
	// FrameLen is every Slot's payload length, MinSlotLen..MaxSlotLen
	// (any value when Interval is zero).
	FrameLen int
}

// AppendBinary appends the wire form of m.
func (m *Shape) AppendBinary(b []byte) []byte {
	us := min(max(m.Interval/time.Microsecond, 0), 1<<32-1)
	b = binary.BigEndian.AppendUint32(append(b, byte(TypeShape)), uint32(us))
	return binary.BigEndian.AppendUint32(b, uint32(max(min(m.FrameLen, 1<<32-1), 0)))
}

func parseShape(body []byte) (*Shape, error) {
	if len(body) != 8 {
		return nil, fmt.Errorf("%w: shape of %d bytes", ErrMalformed, len(body))
	}
	m := &Shape{
		Interval: time.Duration(binary.BigEndian.Uint32(body)) * time.Microsecond,
		FrameLen: int(binary.BigEndian.Uint32(body[4:])),
	}
	if m.Interval != 0 && (m.FrameLen < MinSlotLen || m.FrameLen > MaxSlotLen) {
		return nil, fmt.Errorf("%w: shape frame length %d outside %d..%d", ErrMalformed, m.FrameLen, MinSlotLen, MaxSlotLen)
	}
	return m, nil
}

// Slot is one frame of a shaped downstream: the messages it carries, in
// wire form, none for cover.
type Slot struct {
	Messages [][]byte
	// FrameLen is the frame's whole length, padding included.
	FrameLen int
}

// AppendBinary appends the wire form of m, padded to m.FrameLen. Messages
// that do not fit are left out: build slots with AppendSlot, which says so.
func (m *Slot) AppendBinary(b []byte) []byte {
	msgs := m.Messages
	for len(msgs) > 0 {
		if out, ok := AppendSlot(b, m.FrameLen, msgs...); ok {
			return out
		}
		msgs = msgs[:len(msgs)-1]
	}
	out, _ := AppendSlot(b, max(m.FrameLen, 1))
	return out
}

// SlotRoom is how many bytes of messages, with their length prefixes, a
// Slot frame of frameLen bytes holds.
func SlotRoom(frameLen int) int { return frameLen - 1 }

// SlotCost is what a message of n bytes takes of a Slot's room.
func SlotCost(n int) int { return slotEntryHeader + n }

// AppendSlot appends a Slot frame of exactly frameLen bytes holding msgs,
// and false (with b unchanged) if they do not fit.
func AppendSlot(b []byte, frameLen int, msgs ...[]byte) ([]byte, bool) {
	need := 1
	for _, m := range msgs {
		if len(m) == 0 || len(m) > 0xffff {
			return b, false
		}
		need += SlotCost(len(m))
	}
	if need > frameLen {
		return b, false
	}
	start := len(b)
	b = append(b, byte(TypeSlot))
	for _, m := range msgs {
		b = binary.BigEndian.AppendUint16(b, uint16(len(m)))
		b = append(b, m...)
	}
	return append(b, make([]byte, frameLen-(len(b)-start))...), true
}

func parseSlot(body []byte) (*Slot, error) {
	m := &Slot{FrameLen: 1 + len(body)}
	for len(body) >= slotEntryHeader {
		n := int(binary.BigEndian.Uint16(body))
		if n == 0 {
			break
		}
		body = body[slotEntryHeader:]
		if n > len(body) {
			return nil, fmt.Errorf("%w: slot entry of %d bytes, %d left", ErrMalformed, n, len(body))
		}
		if Type(body[0]) == TypeSlot {
			return nil, fmt.Errorf("%w: slot inside a slot", ErrMalformed)
		}
		m.Messages = append(m.Messages, body[:n])
		body = body[n:]
	}
	for _, x := range body {
		if x != 0 {
			return nil, fmt.Errorf("%w: slot padding not zero", ErrMalformed)
		}
	}
	return m, nil
}
