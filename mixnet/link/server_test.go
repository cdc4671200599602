package link

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nym-go/nym/internal/leakcheck"
)

// TestGarbageIsDroppedAndCounted sends malformed input of every kind to one
// listener. Each must close that connection and bump the right counter,
// deliver nothing, and leave the listener serving honest clients.
func TestGarbageIsDroppedAndCounted(t *testing.T) {
	leakcheck.Check(t)
	var got sink
	ts := startServer(t, "127.0.0.1:0", ServerConfig{
		// Short enough for the silent peer case to finish soon, long enough
		// that honest handshakes pass on a machine busy with other work.
		Config: Config{Handler: got.handle, HandshakeTimeout: 2 * time.Second},
	})
	st := ts.Stats()

	// sealed sends plaintext as one transport message after a real handshake.
	sealed := func(plain []byte) func(t *testing.T) net.Conn {
		return func(t *testing.T) net.Conn {
			nc, sess := rawHandshake(t, ts, newKey(t))
			msg, err := sess.send.seal(nil, plain)
			if err != nil {
				t.Fatal(err)
			}
			if err := writeMessage(nc, msg); err != nil {
				t.Fatal(err)
			}
			return nc
		}
	}
	// raw sends bytes as they are, without a handshake.
	raw := func(b []byte) func(t *testing.T) net.Conn {
		return func(t *testing.T) net.Conn {
			nc, err := net.Dial("tcp", ts.addr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { nc.Close() })
			if _, err := nc.Write(b); err != nil {
				t.Fatal(err)
			}
			return nc
		}
	}
	random := make([]byte, 4096)
	rand.Read(random)
	validFirst, _ := Frame{Kind: KindPacket, Payload: []byte("valid")}.MarshalBinary()

	tests := []struct {
		name    string
		send    func(t *testing.T) net.Conn
		counter *atomic.Uint64
	}{
		{"random bytes", raw(random), &st.HandshakeFails},
		{"oversized handshake length", raw([]byte{0xff, 0xff, 1, 2, 3}), &st.HandshakeFails},
		{"truncated handshake then close", func(t *testing.T) net.Conn {
			nc := raw([]byte{0, 48, 1, 2, 3, 4, 5, 6, 7, 8})(t)
			nc.(*net.TCPConn).CloseWrite()
			return nc
		}, &st.HandshakeFails},
		{"silent until the handshake deadline", raw(nil), &st.HandshakeFails},
		{"first message garbage of the right length", raw(append([]byte{0, 48}, random[:48]...)), &st.HandshakeFails},
		{"bad frame version", sealed([]byte{9, 1, 0, 0, 0}), &st.BadFrames},
		{"unknown frame kind", sealed([]byte{1, 7, 0, 0, 0}), &st.BadFrames},
		{"reserved flag bits", sealed([]byte{1, 1, 0x40, 0, 0}), &st.BadFrames},
		{"frame length past message", sealed([]byte{1, 1, 0, 0, 200, 1, 2}), &st.BadFrames},
		{"valid frame then bad header", sealed(append(append([]byte{}, validFirst...), 1, 1, 4, 0, 0)), &st.BadFrames},
		{"ciphertext that fails authentication", func(t *testing.T) net.Conn {
			nc, _ := rawHandshake(t, ts, newKey(t))
			writeMessage(nc, random[:100])
			return nc
		}, &st.BadMessages},
		{"message too short for a tag", func(t *testing.T) net.Conn {
			nc, _ := rawHandshake(t, ts, newKey(t))
			var hdr [2]byte
			binary.BigEndian.PutUint16(hdr[:], 3)
			nc.Write(append(hdr[:], 1, 2, 3))
			return nc
		}, &st.BadMessages},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tt.counter.Load()
			nc := tt.send(t)
			expectClosedByPeer(t, nc)
			waitFor(t, "counter", func() bool { return tt.counter.Load() == before+1 })

			// The listener still serves an honest client.
			c := dialTest(t, ts, Config{})
			c.Send(Frame{Kind: KindClient, Payload: []byte(tt.name)})
			waitFor(t, "honest frame", func() bool {
				fs := got.snapshot()
				return len(fs) > 0 && string(fs[len(fs)-1].Payload) == tt.name
			})
		})
	}
	for _, f := range got.snapshot() {
		if string(f.Payload) == "valid" {
			t.Fatal("a frame from a malformed message was delivered")
		}
	}
}

func TestServeReturnsWhenContextEnds(t *testing.T) {
	leakcheck.Check(t)
	srv, err := NewServer(ServerConfig{Config: Config{Static: newKey(t), Logger: testLogger(t)}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()

	// A peer stuck mid-handshake must not keep Serve from returning.
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Serve did not return after cancel")
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Fatal("listener still accepting after Serve returned")
	}
}
