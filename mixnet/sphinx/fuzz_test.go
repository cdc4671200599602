package sphinx

import (
	"bytes"
	"errors"
	"testing"
)

// fuzzKey is fixed so that seeds in testdata stay meaningful across runs.
var fuzzKey, _ = NewPrivateKey(bytes.Repeat([]byte{7}, 32))

func validPacket(f *testing.F, size Size) []byte {
	var addr [AddressSize]byte
	route := []Hop{{Address: addr, Key: fuzzKey.PublicKey()}, {Address: addr, Key: fuzzKey.PublicKey()}}
	pkt, err := NewPacket(route, Destination{}, []byte("seed"), size)
	if err != nil {
		f.Fatal(err)
	}
	return pkt
}

// FuzzProcess feeds arbitrary bytes to a node. Nothing may panic, an error
// must leave the buffer as it was, and a success must keep the size.
func FuzzProcess(f *testing.F) {
	f.Add(validPacket(f, SizeRegular))
	f.Add(validPacket(f, SizeAck))
	f.Add(validPacket(f, SizeExtended))
	f.Add(make([]byte, AckPacketSize))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, pkt []byte) {
		before := bytes.Clone(pkt)
		p, err := fuzzKey.Process(pkt)
		if err != nil {
			if !bytes.Equal(pkt, before) {
				t.Fatal("refused packet was modified")
			}
			return
		}
		if !p.Final && len(p.Packet) != len(before) {
			t.Fatal("packet changed size")
		}
		if p.Final {
			OpenPayload(p.Payload)
		}
	})
}

func FuzzHeaderUnmarshal(f *testing.F) {
	f.Add(make([]byte, HeaderSize))
	f.Fuzz(func(t *testing.T, b []byte) {
		var h Header
		if err := h.UnmarshalBinary(b); err != nil {
			return
		}
		out, _ := h.MarshalBinary()
		if !bytes.Equal(out, b) {
			t.Fatal("header does not round-trip")
		}
	})
}

func FuzzSURBUnmarshal(f *testing.F) {
	f.Add(make([]byte, SURBSize))
	f.Fuzz(func(t *testing.T, b []byte) {
		var s SURB
		if err := s.UnmarshalBinary(b); err != nil {
			return
		}
		out, _ := s.MarshalBinary()
		if !bytes.Equal(out, b) {
			t.Fatal("SURB does not round-trip")
		}
		if _, err := s.Packet([]byte("r"), SizeAck); err != nil {
			t.Fatal(err)
		}
	})
}

func FuzzReplyKeys(f *testing.F) {
	f.Add(append([]byte{2}, make([]byte, 96)...), make([]byte, RegularPayload+PayloadOverhead))
	f.Fuzz(func(t *testing.T, b, payload []byte) {
		var k ReplyKeys
		if err := k.UnmarshalBinary(b); err != nil {
			return
		}
		out, _ := k.MarshalBinary()
		if !bytes.Equal(out, b) {
			t.Fatal("reply keys do not round-trip")
		}
		if _, err := k.Open(payload); err != nil && !errors.Is(err, ErrBadPayload) && !errors.Is(err, ErrBadSize) {
			t.Fatalf("unexpected error %v", err)
		}
	})
}

func FuzzOpenPayload(f *testing.F) {
	f.Add(append(make([]byte, 16), 'h', 'i', 1, 0, 0))
	f.Fuzz(func(t *testing.T, p []byte) {
		msg, err := OpenPayload(p)
		if err == nil && len(msg) > len(p)-PayloadOverhead {
			t.Fatal("message longer than payload allows")
		}
	})
}
