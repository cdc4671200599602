package ipr

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"testing"
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
		var pair AddrPair
		if addr.Is4() {
			pair.V4 = addr
		} else {
			pair.V6 = addr
		}
		if _, err := p.Claim(pair); !errors.Is(err, ErrAddressTaken) {
			t.Errorf("Claim(%s) = %v, want ErrAddressTaken", a, err)
		}
	}
	mismatched := AddrPair{V4: netip.MustParseAddr("10.0.0.2"), V6: netip.MustParseAddr("fc00::3")}
	if _, err := p.Claim(mismatched); err == nil {
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
		pair, err := p.Allocate()
		if err != nil {
			t.Fatalf("allocation %d: %v", i, err)
		}
		if seen[pair.V4] || seen[pair.V6] {
			t.Fatalf("allocation %d: %v handed out twice", i, pair)
		}
		seen[pair.V4], seen[pair.V6] = true, true
		if pair.V4 == RouterIPv4 || pair.V6 == RouterIPv6 || !ClientNetV4.Contains(pair.V4) || !ClientNetV6.Contains(pair.V6) {
			t.Fatalf("allocation %d: %v", i, pair)
		}
	}
	for _, a := range []string{"10.0.0.0", "10.0.0.1", "10.0.255.255", "fc00::", "fc00::1", "fc00::ffff"} {
		if seen[netip.MustParseAddr(a)] {
			t.Errorf("%s was handed out", a)
		}
	}
	if _, err := p.Allocate(); !errors.Is(err, ErrNoFreeAddress) {
		t.Fatalf("full pool: %v, want ErrNoFreeAddress", err)
	}
}

func TestPoolReuseAndClaim(t *testing.T) {
	p := newAddrPool(10, 12, rand.New(rand.NewPCG(3, 4)))
	var pairs []AddrPair
	for range 3 {
		pair, err := p.Allocate()
		if err != nil {
			t.Fatal(err)
		}
		pairs = append(pairs, pair)
	}
	if _, err := p.Allocate(); !errors.Is(err, ErrNoFreeAddress) {
		t.Fatalf("allocating a fourth of three: %v", err)
	}
	if _, err := p.Claim(AddrPair{V4: pairs[1].V4}); !errors.Is(err, ErrAddressTaken) {
		t.Fatalf("claiming a taken pair: %v", err)
	}
	p.Release(pairs[1])
	p.Release(pairs[1]) // twice must not free a second slot
	if p.InUse() != 2 {
		t.Fatalf("InUse = %d after a release, want 2", p.InUse())
	}
	got, err := p.Allocate()
	if err != nil || got != pairs[1] {
		t.Fatalf("reallocation got %v, %v; want the released %v", got, err, pairs[1])
	}
	p.Release(pairs[2])
	if got, err := p.Claim(AddrPair{V6: pairs[2].V6}); err != nil || got != pairs[2] {
		t.Fatalf("Claim by IPv6 = %v, %v; want %v", got, err, pairs[2])
	}
	p.Release(AddrPair{V4: netip.MustParseAddr("192.0.2.1")}) // foreign: ignored
	if p.InUse() != 3 {
		t.Fatalf("InUse = %d, want 3", p.InUse())
	}
}
