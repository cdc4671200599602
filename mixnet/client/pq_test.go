package client

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/nym-go/nym/internal/testnet"
)

// TestGatewayLinkIsHybrid: a client dials its gateway with the hybrid
// (post-quantum) handshake, learning the gateway's ML-KEM key from the
// signed topology, and messages flow over it.
func TestGatewayLinkIsHybrid(t *testing.T) {
	n := testnet.Start(t, testnet.Options{})
	a := connect(t, n, nil)
	b := connect(t, n, nil)
	msg := randomBytes(100)
	if err := a.Send(context.Background(), b.Address(), msg); err != nil {
		t.Fatal(err)
	}
	if m := receive(t, b, 60*time.Second); !bytes.Equal(m.Data, msg) {
		t.Fatal("message differs")
	}
	for name, c := range map[string]*Client{"sender": a, "receiver": b} {
		if h, cl := c.linkStats.HandshakesHybrid.Load(), c.linkStats.HandshakesClassical.Load(); h == 0 || cl != 0 {
			t.Errorf("%s: %d hybrid and %d classical handshakes with its gateway; want only hybrid", name, h, cl)
		}
	}
}
