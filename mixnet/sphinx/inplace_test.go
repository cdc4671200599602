package sphinx

import (
	"bytes"
	"crypto/rand"
	"testing"
)

// inPlaceBuffer is a packet buffer as a caller reuses one: stale bytes
// everywhere, and msg at the message offset.
func inPlaceBuffer(msg []byte, size Size) []byte {
	pkt := bytes.Repeat([]byte{0xa5}, size.PacketLen())
	copy(pkt[HeaderSize+MessageOffset:], msg)
	return pkt
}

// A SURB's reply is deterministic: built in place over stale bytes it is
// byte for byte the packet Packet makes.
func TestSURBPacketInPlace(t *testing.T) {
	_, route := newRoute(t, 4)
	surb, _, err := NewSURB(route, newDest())
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []Size{SizeRegular, SizeAck, SizeExtended} {
		for _, n := range []int{0, 1, int(size) / 2, int(size)} {
			msg := make([]byte, n)
			rand.Read(msg)
			want, err := surb.Packet(msg, size)
			if err != nil {
				t.Fatal(err)
			}
			pkt := inPlaceBuffer(msg, size)
			if err := surb.PacketInPlace(pkt, n, size); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(pkt, want) {
				t.Fatalf("size %d, %d bytes: the in-place packet differs", size, n)
			}
		}
	}
	if err := surb.PacketInPlace(make([]byte, 100), 0, SizeRegular); err == nil {
		t.Fatal("short buffer accepted")
	}
	if err := surb.PacketInPlace(make([]byte, SizeAck.PacketLen()), int(SizeAck)+1, SizeAck); err == nil {
		t.Fatal("over-long message accepted")
	}
}

// A forward packet built in place over stale bytes travels and opens like
// one from NewPacket (its header is random, so the bytes cannot be
// compared).
func TestNewPacketInPlace(t *testing.T) {
	for _, size := range []Size{SizeRegular, SizeAck, SizeExtended} {
		nodes, route := newRoute(t, 4)
		dest := newDest()
		msg := make([]byte, int(size)-3)
		rand.Read(msg)
		pkt := inPlaceBuffer(msg, size)
		if err := NewPacketInPlace(pkt, len(msg), route, dest, size); err != nil {
			t.Fatal(err)
		}
		p := walk(t, nodes, route, pkt)
		if p.Destination != dest {
			t.Fatal("delivered to the wrong destination")
		}
		got, err := OpenPayload(p.Payload)
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("size %d: message differs (%v)", size, err)
		}
	}
}
