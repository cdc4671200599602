package router

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/nym-go/nym/ipr"
)

func TestPoolPairsAndRange(t *testing.T) {
	tests := []struct {
		n      uint16
		v4, v6 string
	}{
		{2, "10.0.0.2", "fc00::2"},
		{255, "10.0.0.255", "fc00::ff"},
		{256, "10.0.1.0", "fc00::100"},
		{65534, "10.0.255.254", "fc00::fffe"},
	}
	p := NewAddrPool()
	for _, tt := range tests {
		pair := pairOf(tt.n)
		if pair.V4.String() != tt.v4 || pair.V6.String() != tt.v6 {
			t.Errorf("pairOf(%d) = %v, want %s,%s", tt.n, pair, tt.v4, tt.v6)
		}
		if n, ok := p.hostOf(pair); !ok || n != tt.n {
			t.Errorf("hostOf(%v) = %d, %v", pair, n, ok)
		}
	}
	for _, a := range []string{"10.0.0.0", "10.0.0.1", "10.0.255.255", "10.1.0.2", "fc00::1", "fc00::1:2", "fd00::2"} {
		addr := netip.MustParseAddr(a)
		var pair ipr.AddrPair
		if addr.Is4() {
			pair.V4 = addr
		} else {
			pair.V6 = addr
		}
		if _, err := p.Claim(pair, [ipr.NonceSize]byte{}, t0); !errors.Is(err, ErrAddressTaken) {
			t.Errorf("Claim(%s) = %v, want ErrAddressTaken", a, err)
		}
	}
	mismatched := ipr.AddrPair{V4: netip.MustParseAddr("10.0.0.2"), V6: netip.MustParseAddr("fc00::3")}
	if _, err := p.Claim(mismatched, [ipr.NonceSize]byte{}, t0); err == nil {
		t.Error("claimed a v4 and a v6 of different hosts")
	}
	if p.Size() != 65533 {
		t.Errorf("Size = %d, want 65533", p.Size())
	}
}

// Every address of the full /16 can be handed out once, never the router's,
// the network's or the broadcast address, and then the pool says so.
func TestPoolExhaustionFull(t *testing.T) {
	p := newAddrPool(firstHost, lastHost, rand.New(rand.NewPCG(1, 2)))
	seen := make(map[netip.Addr]bool, p.Size())
	for i := range p.Size() {
		pair, err := p.Allocate(t0)
		if err != nil {
			t.Fatalf("allocation %d: %v", i, err)
		}
		if seen[pair.V4] || seen[pair.V6] {
			t.Fatalf("allocation %d: %v handed out twice", i, pair)
		}
		seen[pair.V4], seen[pair.V6] = true, true
		if pair.V4 == ipr.RouterIPv4 || pair.V6 == ipr.RouterIPv6 || !ipr.ClientNetV4.Contains(pair.V4) || !ipr.ClientNetV6.Contains(pair.V6) {
			t.Fatalf("allocation %d: %v", i, pair)
		}
	}
	for _, a := range []string{"10.0.0.0", "10.0.0.1", "10.0.255.255", "fc00::", "fc00::1", "fc00::ffff"} {
		if seen[netip.MustParseAddr(a)] {
			t.Errorf("%s was handed out", a)
		}
	}
	if _, err := p.Allocate(t0); !errors.Is(err, ErrNoFreeAddress) {
		t.Fatalf("full pool: %v, want ErrNoFreeAddress", err)
	}
}

// Issue 10: a freed address went back into use at once (with its last
// session's conntrack entries still live), and any client could claim any
// free address by Want. Now a released pair waits out its quarantine, and
// only the session it belonged to (by nonce) may take it back meanwhile.
func TestPoolQuarantineAndClaim(t *testing.T) {
	p := newAddrPool(10, 12, rand.New(rand.NewPCG(3, 4)))
	p.SetQuarantine(time.Minute)
	var pairs []ipr.AddrPair
	for range 3 {
		pair, err := p.Allocate(t0)
		if err != nil {
			t.Fatal(err)
		}
		pairs = append(pairs, pair)
	}
	if _, err := p.Allocate(t0); !errors.Is(err, ErrNoFreeAddress) {
		t.Fatalf("allocating a fourth of three: %v", err)
	}
	alice := Owner{Nonce: [ipr.NonceSize]byte{1}, Sender: SessionKey{1}}
	mallory := Owner{Nonce: [ipr.NonceSize]byte{2}, Sender: SessionKey{2}}
	if _, err := p.Claim(ipr.AddrPair{V4: pairs[1].V4}, alice.Nonce, t0); !errors.Is(err, ErrAddressTaken) {
		t.Fatalf("claiming a taken pair: %v", err)
	}
	p.Release(pairs[1], alice, t0)
	p.Release(pairs[1], alice, t0) // twice must not free a second slot
	if all, mine := p.Quarantined(alice.Sender, t0); p.InUse() != 2 || all != 1 || mine != 1 {
		t.Fatalf("InUse %d, quarantined %d (%d alice's) after a release; want 2, 1, 1", p.InUse(), all, mine)
	}
	// Quarantined: not handed out, not claimable by anyone else.
	if got, err := p.Allocate(t0.Add(59 * time.Second)); !errors.Is(err, ErrNoFreeAddress) {
		t.Fatalf("allocation during quarantine got %v, %v", got, err)
	}
	if _, err := p.Claim(pairs[1], mallory.Nonce, t0); !errors.Is(err, ErrAddressTaken) {
		t.Fatalf("another session claimed a quarantined pair: %v", err)
	}
	// Its own session takes it back, by IPv6 alone.
	if got, err := p.Claim(ipr.AddrPair{V6: pairs[1].V6}, alice.Nonce, t0.Add(time.Second)); err != nil || got != pairs[1] {
		t.Fatalf("owner's Claim = %v, %v; want %v", got, err, pairs[1])
	}
	if all, mine := p.Quarantined(alice.Sender, t0); p.InUse() != 3 || all != 0 || mine != 0 {
		t.Fatalf("after the claim: InUse %d, quarantined %d/%d", p.InUse(), all, mine)
	}
	// After the quarantine the pair is free for anyone, and nobody can
	// claim it by name.
	p.Release(pairs[2], alice, t0)
	if _, err := p.Claim(pairs[2], mallory.Nonce, t0); err == nil {
		t.Fatal("claimed another's pair")
	}
	later := t0.Add(time.Minute)
	if _, err := p.Claim(pairs[2], alice.Nonce, later); err == nil {
		t.Fatal("claimed a pair whose quarantine is over: it is nobody's now")
	}
	if got, err := p.Allocate(later); err != nil || got != pairs[2] {
		t.Fatalf("allocation after the quarantine got %v, %v; want %v", got, err, pairs[2])
	}
	p.Release(ipr.AddrPair{V4: netip.MustParseAddr("192.0.2.1")}, alice, t0) // foreign: ignored
	if p.InUse() != 3 {
		t.Fatalf("InUse = %d, want 3", p.InUse())
	}
	// A pair claimed back and released again expires by its new release.
	p.Release(pairs[0], alice, later)
	if _, err := p.Claim(pairs[0], alice.Nonce, later); err != nil {
		t.Fatal(err)
	}
	p.Release(pairs[0], alice, later.Add(30*time.Second))
	if _, err := p.Allocate(later.Add(time.Minute)); !errors.Is(err, ErrNoFreeAddress) {
		t.Fatal("a re-released pair left quarantine by its first release's clock")
	}
	if got, err := p.Allocate(later.Add(90 * time.Second)); err != nil || got != pairs[0] {
		t.Fatalf("got %v, %v; want %v", got, err, pairs[0])
	}
}

// Without a quarantine a released pair is free at once.
func TestPoolNoQuarantine(t *testing.T) {
	p := newAddrPool(10, 10, nil)
	a, _ := p.Allocate(t0)
	p.Release(a, Owner{}, t0)
	if b, err := p.Allocate(t0); err != nil || b != a {
		t.Fatalf("got %v, %v", b, err)
	}
}
