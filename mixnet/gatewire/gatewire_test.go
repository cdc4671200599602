package gatewire

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/nym-go/nym/mixnet/sphinx"
)

func TestRoundTrip(t *testing.T) {
	send := &Send{Parity: 1, Packet: bytes.Repeat([]byte{9}, sphinx.RegularPacketSize)}
	send.FirstHop[3] = 7
	ack := &Send{Packet: make([]byte, sphinx.AckPacketSize)}
	del := &Deliver{Seq: 1 << 40, Payload: []byte("payload")}
	del.ID[0] = 5
	for _, m := range []interface{ AppendBinary([]byte) []byte }{
		send, ack, del, &Deliver{Payload: []byte{}}, &Received{Seq: 42}, &Status{Code: StatusRefused, Text: "over quota"},
	} {
		got, err := Parse(m.AppendBinary(nil))
		if err != nil {
			t.Fatalf("%T: %v", m, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("%T: got %+v, want %+v", m, got, m)
		}
	}
}

func TestMalformed(t *testing.T) {
	cases := map[string][]byte{
		"empty":            nil,
		"unknown type":     {99},
		"short send":       {byte(TypeSend), 0, 1, 2},
		"bad parity":       append([]byte{byte(TypeSend), 2}, make([]byte, 32+sphinx.AckPacketSize)...),
		"odd packet size":  append([]byte{byte(TypeSend), 0}, make([]byte, 32+100)...),
		"short deliver":    {byte(TypeDeliver), 0, 0},
		"long received":    append([]byte{byte(TypeReceived)}, make([]byte, 9)...),
		"empty status":     {byte(TypeStatus)},
		"bad utf8 status":  {byte(TypeStatus), 0, 0xff},
		"long status text": append([]byte{byte(TypeStatus), 0}, strings.Repeat("x", MaxStatusText+1)...),
	}
	for name, b := range cases {
		if _, err := Parse(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
}

func TestStatusTextCut(t *testing.T) {
	m := &Status{Text: strings.Repeat("é", MaxStatusText)}
	got, err := Parse(m.AppendBinary(nil))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(got.(*Status).Text); n > MaxStatusText {
		t.Fatalf("text of %d bytes", n)
	}
}

func FuzzParse(f *testing.F) {
	f.Add((&Received{Seq: 1}).AppendBinary(nil))
	f.Add((&Status{Text: "hi"}).AppendBinary(nil))
	f.Add((&Deliver{Payload: []byte("x")}).AppendBinary(nil))
	f.Add((&Send{Packet: make([]byte, sphinx.AckPacketSize)}).AppendBinary(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			return
		}
		out := m.(interface{ AppendBinary([]byte) []byte }).AppendBinary(nil)
		if !bytes.Equal(out, b) {
			t.Fatalf("does not round-trip: %x → %x", b, out)
		}
	})
}

func TestEnvelope(t *testing.T) {
	withAck := &Envelope{HasAck: true, AckParity: 1, Ack: bytes.Repeat([]byte{3}, sphinx.AckPacketSize), Body: []byte("body")}
	withAck.AckHop[0] = 1
	for _, e := range []*Envelope{withAck, {Body: []byte("plain")}, {Body: []byte{}}} {
		b := e.AppendBinary(nil)
		got, err := ParseEnvelope(b)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, e) {
			t.Fatalf("got %+v, want %+v", got, e)
		}
	}
	for _, b := range [][]byte{nil, {4}, {2}, {1, 0}} {
		if _, err := ParseEnvelope(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%x: err = %v", b, err)
		}
	}
}

func FuzzParseEnvelope(f *testing.F) {
	f.Add([]byte{0, 'x'})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := ParseEnvelope(b)
		if err != nil {
			return
		}
		if out := e.AppendBinary(nil); !bytes.Equal(out, b) {
			t.Fatal("envelope does not round-trip")
		}
	})
}
