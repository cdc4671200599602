package gatewire

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"
)

func TestShapeRoundTrip(t *testing.T) {
	for _, m := range []*Shape{
		{Interval: 10 * time.Millisecond, FrameLen: MinSlotLen},
		{Interval: time.Microsecond, FrameLen: MaxSlotLen},
		{},
	} {
		got, err := Parse(m.AppendBinary(nil))
		if err != nil {
			t.Fatalf("%+v: %v", m, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("got %+v, want %+v", got, m)
		}
	}
	for _, m := range []*Shape{{Interval: time.Millisecond, FrameLen: MinSlotLen - 1}, {Interval: time.Millisecond, FrameLen: MaxSlotLen + 1}} {
		if _, err := Parse(m.AppendBinary(nil)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%+v: err = %v, want ErrMalformed", m, err)
		}
	}
}

// Every Slot is exactly its frame length, whatever it carries: cover, one
// delivery, or several small messages packed together.
func TestSlotLength(t *testing.T) {
	full := (&Deliver{Payload: make([]byte, MinSlotLen-1-SlotCost(DeliverHeaderLen))}).AppendBinary(nil)
	ack := (&Deliver{Payload: make([]byte, 38)}).AppendBinary(nil)
	quota := (&Quota{Left: 7}).AppendBinary(nil)
	for name, msgs := range map[string][][]byte{
		"cover":  nil,
		"full":   {full},
		"packed": {ack, quota, ack},
	} {
		b, ok := AppendSlot(nil, MinSlotLen, msgs...)
		if !ok || len(b) != MinSlotLen {
			t.Fatalf("%s: ok %v, %d bytes, want %d", name, ok, len(b), MinSlotLen)
		}
		m, err := Parse(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		s := m.(*Slot)
		if len(s.Messages) != len(msgs) {
			t.Fatalf("%s: %d messages, want %d", name, len(s.Messages), len(msgs))
		}
		for i := range msgs {
			if !bytes.Equal(s.Messages[i], msgs[i]) {
				t.Fatalf("%s: message %d differs", name, i)
			}
		}
	}
	if _, ok := AppendSlot(nil, MinSlotLen, full, ack); ok {
		t.Fatal("a slot took more than it holds")
	}
	if SlotLen(2413) != MinSlotLen || SlotRoom(MinSlotLen) < SlotCost(len(full)) {
		t.Fatalf("MinSlotLen %d does not hold a regular delivery", MinSlotLen)
	}
}

func TestSlotMalformed(t *testing.T) {
	inner, _ := AppendSlot(nil, 10)
	cases := map[string][]byte{
		"entry past end":   {byte(TypeSlot), 0, 9, 1},
		"nested slot":      append([]byte{byte(TypeSlot), 0, byte(len(inner))}, inner...),
		"padding not zero": {byte(TypeSlot), 0, 0, 0, 1},
	}
	for name, b := range cases {
		if _, err := Parse(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
}

// FuzzParseShapeSlot points FuzzParse's round trip at the shaping messages.
func FuzzParseShapeSlot(f *testing.F) {
	f.Add((&Shape{Interval: time.Millisecond, FrameLen: MinSlotLen}).AppendBinary(nil))
	cover, _ := AppendSlot(nil, 64)
	f.Add(cover)
	packed, _ := AppendSlot(nil, 64, (&Received{Seq: 3}).AppendBinary(nil), (&Quota{Left: 1}).AppendBinary(nil))
	f.Add(packed)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			return
		}
		if out := m.(interface{ AppendBinary([]byte) []byte }).AppendBinary(nil); !bytes.Equal(out, b) {
			t.Fatalf("does not round-trip: %x → %x", b, out)
		}
	})
}
