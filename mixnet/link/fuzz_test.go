package link

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"
)

// FuzzDecodeFrames checks that the frame decoder never panics, delivers
// nothing from a malformed message, and that whatever it accepts re-encodes
// to exactly the input.
func FuzzDecodeFrames(f *testing.F) {
	one, _ := Frame{Kind: KindPacket, KeyParity: true, Payload: payload(40, 1)}.MarshalBinary()
	two, _ := Frame{Kind: KindClient}.AppendBinary(append([]byte{}, one...))
	f.Add([]byte{})
	f.Add(one)
	f.Add(two)
	f.Add([]byte{1, 3, 0, 0, 0})
	f.Add([]byte{1, 1, 2, 0, 0})
	f.Add([]byte{1, 1, 0, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, msg []byte) {
		var frames []Frame
		err := DecodeFrames(msg, func(fr Frame) error {
			frames = append(frames, fr)
			return nil
		})
		if err != nil {
			if len(frames) != 0 {
				t.Fatalf("error %v after delivering %d frames", err, len(frames))
			}
			return
		}
		var re []byte
		for _, fr := range frames {
			if re, err = fr.AppendBinary(re); err != nil {
				t.Fatalf("decoded frame does not re-encode: %v", err)
			}
		}
		if !bytes.Equal(re, msg) {
			t.Fatalf("re-encoding differs:\n in % x\nout % x", msg, re)
		}
	})
}

// scriptConn is a net.Conn whose reads come from a fixed script and whose
// writes vanish: it lets a fuzzer play the other side of a handshake.
type scriptConn struct{ r io.Reader }

func (c scriptConn) Read(b []byte) (int, error)       { return c.r.Read(b) }
func (c scriptConn) Write(b []byte) (int, error)      { return len(b), nil }
func (c scriptConn) Close() error                     { return nil }
func (c scriptConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c scriptConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c scriptConn) SetDeadline(time.Time) error      { return nil }
func (c scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c scriptConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzHandshake feeds arbitrary bytes to both ends of the handshake, the
// other decoder that reads unauthenticated input. Neither may panic, and no
// input can complete a handshake without the keys.
func FuzzHandshake(f *testing.F) {
	responder := newKey(f)
	initiator := newKey(f)
	f.Add([]byte{0, 48}, false)
	f.Add(bytes.Repeat([]byte{0, 48}, 100), true)
	f.Add([]byte{0xff, 0xff, 1, 2, 3}, false)
	f.Fuzz(func(t *testing.T, script []byte, asInitiator bool) {
		nc := scriptConn{bytes.NewReader(script)}
		var err error
		if asInitiator {
			_, err = initiatorHandshake(context.Background(), nc, initiator, responder.Public, nil, time.Second)
		} else {
			_, err = responderHandshake(context.Background(), nc, responder, time.Second, time.Second)
		}
		if err == nil {
			t.Fatal("handshake completed against a scripted peer")
		}
	})
}
