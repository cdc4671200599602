package link

import (
	"bytes"
	"errors"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		f    Frame
	}{
		{"empty packet", Frame{Kind: KindPacket}},
		{"one byte client", Frame{Kind: KindClient, Payload: []byte{0xaa}}},
		{"sphinx packet odd key", Frame{Kind: KindPacket, KeyParity: true, Payload: payload(2413, 1)}},
		{"control", Frame{Kind: KindControl, Payload: []byte("ping")}},
		{"max payload", Frame{Kind: KindPacket, Payload: payload(MaxFramePayload, 2)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.f.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			if len(b) != tt.f.EncodedLen() {
				t.Fatalf("encoded %d bytes, EncodedLen says %d", len(b), tt.f.EncodedLen())
			}
			if b[0] != FrameVersion || Kind(b[1]) != tt.f.Kind {
				t.Fatalf("header % x", b[:FrameHeaderLen])
			}
			got, rest, err := DecodeFrame(b)
			if err != nil {
				t.Fatal(err)
			}
			if len(rest) != 0 || !equalFrame(got, tt.f) {
				t.Fatalf("decoded %+v rest %d, want %+v", got, len(rest), tt.f)
			}
		})
	}
}

func TestDecodeFramesMany(t *testing.T) {
	want := []Frame{
		{Kind: KindPacket, Payload: payload(2413, 1)},
		{Kind: KindClient, KeyParity: true},
		{Kind: KindPacket, Payload: payload(3, 2)},
	}
	var msg []byte
	for _, f := range want {
		msg, _ = f.AppendBinary(msg)
	}
	var got []Frame
	if err := DecodeFrames(msg, func(f Frame) error { got = append(got, f); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("got %d frames, want %d", len(got), len(want))
	}
	for i := range want {
		if !equalFrame(got[i], want[i]) {
			t.Errorf("frame %d differs", i)
		}
	}
	// A payload must not be able to grow into the next frame.
	if cap(got[1].Payload) != 0 {
		t.Errorf("payload cap %d leaks the rest of the message", cap(got[1].Payload))
	}
}

func TestDecodeFramesRejects(t *testing.T) {
	good, _ := Frame{Kind: KindPacket, Payload: []byte{1, 2, 3}}.MarshalBinary()
	tests := []struct {
		name string
		msg  []byte
		want error
	}{
		{"empty message", nil, ErrEmptyMessage},
		{"short header", []byte{1, 1, 0, 0}, ErrFrameTruncated},
		{"version 0", []byte{0, 1, 0, 0, 0}, ErrFrameVersion},
		{"version 2", []byte{2, 1, 0, 0, 0}, ErrFrameVersion},
		{"kind 0", []byte{1, 0, 0, 0, 0}, ErrFrameKind},
		{"kind 4", []byte{1, 4, 0, 0, 0}, ErrFrameKind},
		{"reserved flag bit 1", []byte{1, 1, 2, 0, 0}, ErrFrameFlags},
		{"reserved flag bit 7", []byte{1, 1, 0x81, 0, 0}, ErrFrameFlags},
		{"length past end", []byte{1, 1, 0, 0, 4, 1, 2, 3}, ErrFrameTruncated},
		{"length 65535 past end", []byte{1, 1, 0, 0xff, 0xff}, ErrFrameTruncated},
		{"good then garbage", append(append([]byte{}, good...), 9), ErrFrameTruncated},
		{"good then bad kind", append(append([]byte{}, good...), 1, 9, 0, 0, 0), ErrFrameKind},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			err := DecodeFrames(tt.msg, func(Frame) error { calls++; return nil })
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if calls != 0 {
				t.Fatalf("malformed message delivered %d frames", calls)
			}
		})
	}
}

func TestFrameValidate(t *testing.T) {
	tests := []struct {
		name string
		f    Frame
		want error
	}{
		{"kind 0", Frame{}, ErrFrameKind},
		{"kind 9", Frame{Kind: 9}, ErrFrameKind},
		{"too large", Frame{Kind: KindPacket, Payload: make([]byte, MaxFramePayload+1)}, ErrFrameTooLarge},
		{"ok", Frame{Kind: KindClient, Payload: make([]byte, MaxFramePayload)}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.f.AppendBinary([]byte("prefix"))
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if err != nil && !bytes.Equal(b, []byte("prefix")) {
				t.Fatal("failed append changed the buffer")
			}
		})
	}
}
