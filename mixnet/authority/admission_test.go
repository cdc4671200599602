package authority

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/nym-go/nym/mixnet/directory"
)

// TestPendingBoundUnderSpreadFlood: fake registrations from 60 sources,
// each within its rate, fill the room for registrations awaiting their
// handshake (here 10); honest new nodes wait only until the next probe
// round drops the fakes, whose handshakes fail, and admitted nodes keep
// refreshing throughout.
func TestPendingBoundUnderSpreadFlood(t *testing.T) {
	s, clock := newTestServerDefaults(t, Config{Admission: Admission{MaxPending: 10}})
	ts := httptest.NewServer(s)
	defer ts.Close()
	admitted := honestNetwork(t)
	register(t, ts.URL, s, admitted...)
	top := settle(t, s, clock)
	requireSeated(t, top, admitted)

	full := 0
	for i := range 60 {
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		host := fmt.Sprintf("127.0.80.%d", 1+i)
		d := directory.Descriptor{
			Identity:     directory.Key(priv.Public().(ed25519.PublicKey)),
			NoiseKey:     newKey(t),
			SphinxKeys:   []directory.SphinxKey{{Rotation: 0, Key: newKey(t)}, {Rotation: 1, Key: newKey(t)}},
			MixnetAddr:   host + ":1789",
			HTTPAddr:     host + ":8080",
			Capabilities: mixOnly,
			IssuedAt:     s.cfg.Now(),
		}
		sd, err := directory.SignDescriptor(priv, d)
		if err != nil {
			t.Fatal(err)
		}
		if status, _ := postFrom(t, ts.URL, host, sd); status == http.StatusServiceUnavailable {
			full++
		}
	}
	if full != 50 {
		t.Fatalf("%d of 60 fake registrations were turned away; want 50 (room for 10)", full)
	}
	for _, n := range admitted { // admitted nodes refresh regardless
		if status, body := postFrom(t, ts.URL, "127.0.0.2", n.signed(t, s.cfg.Now())); status != http.StatusOK {
			t.Fatalf("admitted node's refresh under the flood: %d %s", status, body)
		}
	}
	newcomer := newTestNodeAt(t, mixOnly, "127.0.90.1")
	if status, _ := postFrom(t, ts.URL, "127.0.0.2", newcomer.signed(t, s.cfg.Now())); status != http.StatusServiceUnavailable {
		t.Fatalf("newcomer while the room is full: %d", status)
	}
	s.probeRound(context.Background(), nil) // the fakes fail their handshakes and leave
	if status, body := postFrom(t, ts.URL, "127.0.0.2", newcomer.signed(t, s.cfg.Now())); status != http.StatusOK {
		t.Fatalf("newcomer after the fakes' handshakes failed: %d %s", status, body)
	}
}

func TestSeatPrefix(t *testing.T) {
	for _, c := range []struct{ ip, want string }{
		{"192.0.2.77", "192.0.2.0/24"},
		{"2001:db8:1:2:3::4", "2001:db8:1::/48"},
	} {
		if got := seatPrefix(netip.MustParseAddr(c.ip)); got.String() != c.want {
			t.Errorf("seatPrefix(%s) = %s, want %s", c.ip, got, c.want)
		}
	}
}

// TestNewAddressMustBeProvedAgain: an admitted node that announces another
// mixnet address (where its key is not) loses its proof and, at the next
// boundary, its seat; the address it left is free for others.
func TestNewAddressMustBeProvedAgain(t *testing.T) {
	s, clock := newTestServer(t, Config{})
	nodes := network(t)
	registerAll(t, s, nodes...)
	requireSeated(t, settle(t, s, clock), nodes)
	mover := nodes[2]
	closed := listenOn(t, "127.0.0.1")
	mover.desc.MixnetAddr = closed.Addr().String()
	closed.Close()
	registerAll(t, s, mover)
	probeTwice(t, s)
	nextEpoch(s, clock)
	if role, _ := s.Topology().RoleOf(mover.id()); role != directory.RoleNone {
		t.Fatalf("node at an unproven address plays %v", role)
	}
}
