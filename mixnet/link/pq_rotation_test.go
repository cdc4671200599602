package link

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

// rotationKEM is one rotation's KEM key, both halves.
type rotationKEM struct {
	priv *KEMKey
	pub  *KEMPublicKey
}

func newRotationKEM(t *testing.T) rotationKEM {
	t.Helper()
	k, err := GenerateKEMKey()
	if err != nil {
		t.Fatal(err)
	}
	pk, err := ParseKEMPublicKey(k.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	return rotationKEM{k, pk}
}

// TestKEMKeyRotation: a responder whose KEM keys rotate (KeyPair.KEMKeys,
// as a node holds them) completes hybrid handshakes with the current, the
// next and, during the overlap, the previous rotation's key; once a key is
// dropped a handshake naming it fails with ErrUnknownKEMKey, and the
// responder keeps serving the keys it holds.
func TestKEMKeyRotation(t *testing.T) {
	var s sink
	srvStats := new(Stats)
	r0, r1, r2 := newRotationKEM(t), newRotationKEM(t), newRotationKEM(t)
	key := newKey(t)
	key.KEMKeys = NewKEMKeyring(r0.priv, r1.priv) // rotation 0: current and next
	ts := startServer(t, "127.0.0.1:0", ServerConfig{Config: Config{Static: key, Handler: s.handle, Stats: srvStats}})
	seq := 0
	dialWith := func(rk rotationKEM) (*Conn, error) {
		return Dial(context.Background(), ts.addr, key.Public, Config{
			Static: newKey(t), Logger: testLogger(t),
			PeerKEM: func([32]byte) *KEMPublicKey { return rk.pub },
		})
	}
	works := func(what string, rk rotationKEM) {
		t.Helper()
		c, err := dialWith(rk)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		defer c.Close()
		seq++
		exchange(t, c, &s, seq)
	}
	works("current rotation's key", r0)
	works("next rotation's key", r1)

	// Rotation 1, first epoch: current, next and the previous (overlap).
	key.KEMKeys.Set(r1.priv, r2.priv, r0.priv)
	works("previous rotation's key during the overlap", r0)
	works("new current key", r1)
	works("new next key", r2)

	// The overlap ends: rotation 0's key is dropped.
	key.KEMKeys.Set(r1.priv, r2.priv)
	if c, err := dialWith(r0); err == nil {
		c.Close()
		t.Fatal("handshake with an expired KEM key succeeded")
	}
	// The responder's side of it, driven directly: it names the cause.
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go initiatorHandshake(context.Background(), a, newKey(t), key.Public, encapsulate(r0.pub), 5*time.Second)
	if _, err := respond(context.Background(), b, key, 5*time.Second); !errors.Is(err, ErrUnknownKEMKey) {
		t.Fatalf("responder to an expired key: %v, want ErrUnknownKEMKey", err)
	}
	works("current key after a refused expired one", r1)
	if got := srvStats.HandshakesHybrid.Load(); got != uint64(seq) {
		t.Errorf("responder counted %d hybrid handshakes, want %d", got, seq)
	}
}
