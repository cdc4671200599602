package link

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flynn/noise"
)

// newPQKey is a node key with a fresh ML-KEM key.
func newPQKey(t testing.TB) KeyPair {
	t.Helper()
	k := newKey(t)
	kem, err := GenerateKEMKey()
	if err != nil {
		t.Fatal(err)
	}
	k.KEM = kem
	return k
}

// publicKEM is what an initiator learns from k's descriptor.
func publicKEM(t testing.TB, k KeyPair) *KEMPublicKey {
	t.Helper()
	pk, err := ParseKEMPublicKey(k.KEM.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	return pk
}

// peerKEMOf answers PeerKEM for one responder.
func peerKEMOf(t testing.TB, k KeyPair) func([32]byte) *KEMPublicKey {
	pk := publicKEM(t, k)
	return func(remote [32]byte) *KEMPublicKey {
		if remote == k.Public {
			return pk
		}
		return nil
	}
}

// lockedBuffer collects log output written from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// exchange sends one frame over c and waits for the server's sink to get it,
// proving the session keys agree.
func exchange(t *testing.T, c *Conn, s *sink, seq int) {
	t.Helper()
	want := Frame{Kind: KindPacket, Payload: payload(100, seq)}
	if !c.Send(want) {
		t.Fatal("Send refused the frame")
	}
	got := s.waitN(t, seq)
	if !equalFrame(got[seq-1], want) {
		t.Fatalf("frame %d arrived altered", seq)
	}
}

// TestHybridHandshake: an initiator that knows the responder's KEM key runs
// the hybrid handshake, traffic flows, and both ends count it as hybrid.
func TestHybridHandshake(t *testing.T) {
	var s sink
	srvStats := new(Stats)
	ts := startServer(t, "127.0.0.1:0", ServerConfig{Config: Config{Static: newPQKey(t), Handler: s.handle, Stats: srvStats}})
	cliStats := new(Stats)
	c := dialTest(t, ts, Config{PeerKEM: peerKEMOf(t, ts.key), Stats: cliStats})
	exchange(t, c, &s, 1)
	if got := cliStats.HandshakesHybrid.Load(); got != 1 || cliStats.HandshakesClassical.Load() != 0 {
		t.Errorf("initiator counted %d hybrid, %d classical handshakes; want 1, 0", got, cliStats.HandshakesClassical.Load())
	}
	if got := srvStats.HandshakesHybrid.Load(); got != 1 || srvStats.HandshakesClassical.Load() != 0 {
		t.Errorf("responder counted %d hybrid, %d classical handshakes; want 1, 0", got, srvStats.HandshakesClassical.Load())
	}
}

// TestMixedNetwork: during an upgrade a responder with a KEM key still
// accepts an initiator that does not know it (an old node), classically.
func TestMixedNetwork(t *testing.T) {
	var s sink
	srvStats := new(Stats)
	ts := startServer(t, "127.0.0.1:0", ServerConfig{Config: Config{Static: newPQKey(t), Handler: s.handle, Stats: srvStats}})
	c := dialTest(t, ts, Config{})
	exchange(t, c, &s, 1)
	if srvStats.HandshakesClassical.Load() != 1 || srvStats.HandshakesHybrid.Load() != 0 {
		t.Errorf("responder counted %d classical, %d hybrid; want 1, 0", srvStats.HandshakesClassical.Load(), srvStats.HandshakesHybrid.Load())
	}
	// And a new initiator talks classically to an old responder (no KEM
	// key published).
	var s2 sink
	old := startServer(t, "127.0.0.1:0", ServerConfig{Config: Config{Handler: s2.handle}})
	c2 := dialTest(t, old, Config{PeerKEM: func([32]byte) *KEMPublicKey { return nil }})
	exchange(t, c2, &s2, 1)
}

// TestRequirePQRefusesClassical: a responder that requires post-quantum
// links refuses a classical initiator, says so in one warning, and still
// serves hybrid initiators.
func TestRequirePQRefusesClassical(t *testing.T) {
	var s sink
	var logs lockedBuffer
	srvStats := new(Stats)
	key := newPQKey(t)
	key.RequirePQ = true
	ts := startServer(t, "127.0.0.1:0", ServerConfig{Config: Config{
		Static: key, Handler: s.handle, Stats: srvStats,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	}})
	_, err := Dial(context.Background(), ts.addr, key.Public, Config{Static: newKey(t), Logger: testLogger(t)})
	if err == nil {
		t.Fatal("classical initiator got a link to a node that requires post-quantum links")
	}
	waitFor(t, "the refusal counted", func() bool { return srvStats.RefusedClassical.Load() == 1 })
	if n := strings.Count(logs.String(), "requires post-quantum links"); n != 1 {
		t.Errorf("want one log line about the refusal, got %d:\n%s", n, logs.String())
	}
	c := dialTest(t, ts, Config{PeerKEM: peerKEMOf(t, key)})
	exchange(t, c, &s, 1)
}

// TestInitiatorRequirePQ: a node that requires post-quantum links does not
// dial a peer that publishes no KEM key.
func TestInitiatorRequirePQ(t *testing.T) {
	ts := startServer(t, "127.0.0.1:0", ServerConfig{})
	key := newPQKey(t)
	key.RequirePQ = true
	_, err := Dial(context.Background(), ts.addr, ts.key.Public, Config{Static: key, Logger: testLogger(t)})
	if !errors.Is(err, ErrClassicalRefused) {
		t.Fatalf("Dial = %v, want ErrClassicalRefused", err)
	}
}

// rawHybrid runs the initiator handshake against ts with a hand-made KEM
// half, the way an attacker or a broken initiator would.
func rawHybrid(t *testing.T, ts *testServer, kem *kemEncap) error {
	t.Helper()
	nc, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_, err = initiatorHandshake(context.Background(), nc, newKey(t), ts.key.Public, kem, 5*time.Second)
	return err
}

// TestHybridBadKEM: a handshake whose KEM part is altered, truncated,
// replayed or meant for another key fails, and the responder keeps
// serving.
func TestHybridBadKEM(t *testing.T) {
	var s sink
	srvStats := new(Stats)
	ts := startServer(t, "127.0.0.1:0", ServerConfig{Config: Config{Static: newPQKey(t), Handler: s.handle, Stats: srvStats}})
	pk := publicKEM(t, ts.key)
	earlier := encapsulate(pk) // a ciphertext seen on an earlier link
	otherKey := newPQKey(t)

	cases := map[string]func() (*kemEncap, error){
		"altered ciphertext": func() (*kemEncap, error) {
			e := encapsulate(pk)
			e.payload.Ciphertext[500] ^= 1
			return e, nil
		},
		"replayed ciphertext": func() (*kemEncap, error) {
			// The attacker replays an earlier ciphertext but cannot know
			// its secret.
			e := encapsulate(pk)
			e.payload.Ciphertext = earlier.payload.Ciphertext
			return e, nil
		},
		"other key": func() (*kemEncap, error) {
			return encapsulate(publicKEM(t, otherKey)), nil
		},
		"other key, our id": func() (*kemEncap, error) {
			e := encapsulate(publicKEM(t, otherKey))
			e.payload.KeyID = pk.id
			return e, nil
		},
	}
	for name, mk := range cases {
		t.Run(name, func(t *testing.T) {
			e, _ := mk()
			if err := rawHybrid(t, ts, e); err == nil {
				t.Fatal("handshake succeeded")
			}
		})
	}

	t.Run("truncated ciphertext", func(t *testing.T) {
		// A message 1 that authenticates but carries a short KEM payload.
		for _, cut := range []int{1, 16, kemPayloadSize - 8} {
			nc, err := net.Dial("tcp", ts.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			full, _ := encapsulate(pk).payload.MarshalBinary()
			writeHybridMessage1(t, nc, ts.key, full[:len(full)-cut])
			expectClosedByPeer(t, nc)
		}
	})

	t.Run("replayed message 1", func(t *testing.T) {
		// Record a real hybrid message 1 and play it to the server again:
		// it answers, but the replayer cannot finish.
		rec := &recordingDialer{}
		c, err := Dial(context.Background(), ts.addr, ts.key.Public, Config{Static: newKey(t), PeerKEM: peerKEMOf(t, ts.key), DialContext: rec.dial, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		msg1 := rec.first()
		nc, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		fails := srvStats.HandshakeFails.Load()
		if _, err := nc.Write(msg1); err != nil {
			t.Fatal(err)
		}
		if _, err := readMessage(nc, maxHandshakeMessage); err != nil {
			t.Fatalf("reading message 2: %v", err)
		}
		writeMessage(nc, make([]byte, 64)) // a guess at message 3
		expectClosedByPeer(t, nc)
		waitFor(t, "the replay to fail", func() bool { return srvStats.HandshakeFails.Load() > fails })
	})

	// Through all of this the server kept serving.
	c := dialTest(t, ts, Config{PeerKEM: peerKEMOf(t, ts.key)})
	exchange(t, c, &s, 1)
	if got := srvStats.HandshakesHybrid.Load(); got != 2 {
		t.Errorf("responder completed %d hybrid handshakes, want only the two honest ones (recorded and last)", got)
	}
}

// writeHybridMessage1 sends a hybrid message 1 with an arbitrary payload,
// correctly encrypted, to the responder key.
func writeHybridMessage1(t *testing.T, nc net.Conn, responder KeyPair, payload []byte) {
	t.Helper()
	hs, err := noise.NewHandshakeState(handshakeConfig(true, newKey(t), responder.Public[:], true, nil))
	if err != nil {
		t.Fatal(err)
	}
	msg, _, _, err := hs.WriteMessage(nil, payload)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeMessage(nc, msg); err != nil {
		t.Fatal(err)
	}
}

// recordingDialer dials TCP and keeps the first bytes the initiator writes,
// length prefix included: message 1.
type recordingDialer struct {
	mu  sync.Mutex
	buf []byte
}

func (r *recordingDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &recordingConn{Conn: nc, r: r}, nil
}

func (r *recordingDialer) first() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]byte(nil), r.buf...)
}

type recordingConn struct {
	net.Conn
	r     *recordingDialer
	wrote bool
}

func (c *recordingConn) Write(p []byte) (int, error) {
	if !c.wrote { // writeMessage sends message 1 in a single write
		c.wrote = true
		c.r.mu.Lock()
		c.r.buf = append([]byte(nil), p...)
		c.r.mu.Unlock()
	}
	return c.Conn.Write(p)
}

// TestMITMStripsKEM: a man in the middle who cuts the KEM part out of a
// hybrid message 1, to make it look classical, is detected: the responder
// drops the message and the initiator's Dial fails.
func TestMITMStripsKEM(t *testing.T) {
	srvStats := new(Stats)
	ts := startServer(t, "127.0.0.1:0", ServerConfig{Config: Config{Static: newPQKey(t), Stats: srvStats}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	stripped := make(chan error, 1)
	go func() {
		stripped <- func() error {
			in, err := ln.Accept()
			if err != nil {
				return err
			}
			defer in.Close()
			out, err := net.Dial("tcp", ts.addr)
			if err != nil {
				return err
			}
			defer out.Close()
			msg1, err := readMessage(in, maxHandshakeMessage)
			if err != nil {
				return err
			}
			if len(msg1) != hybridMessage1Size {
				return errors.New("initiator did not offer the hybrid handshake")
			}
			// Keep the ephemeral key and a tag: a classical-sized message.
			classical := append(append([]byte(nil), msg1[:32]...), msg1[len(msg1)-16:]...)
			if err := writeMessage(out, classical); err != nil {
				return err
			}
			go func() {
				io.Copy(in, out)
				in.Close() // the responder hung up: so do we
			}()
			io.Copy(out, in)
			return nil
		}()
	}()
	_, err = Dial(context.Background(), ln.Addr().String(), ts.key.Public, Config{Static: newKey(t), PeerKEM: peerKEMOf(t, ts.key), Logger: testLogger(t)})
	if err == nil {
		t.Fatal("initiator accepted a link whose KEM part was stripped")
	}
	if err := <-stripped; err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the responder to drop the stripped handshake", func() bool { return srvStats.HandshakeFails.Load() == 1 })
	if n := srvStats.HandshakesClassical.Load() + srvStats.HandshakesHybrid.Load(); n != 0 {
		t.Fatalf("responder completed %d handshakes", n)
	}
}

// respond runs the responder handshake with timeout for the whole of it,
// for the tests and benchmarks that drive it directly.
func respond(ctx context.Context, nc net.Conn, local KeyPair, timeout time.Duration) (session, error) {
	return responderHandshake(ctx, nc, local, timeout, timeout)
}
