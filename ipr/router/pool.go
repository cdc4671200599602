package router

import (
	crand "crypto/rand"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"

	"github.com/nym-go/nym/ipr"
)

// Client host numbers: n gives 10.0.(n>>8).(n&255) and fc00::n. 0 is the
// network, 1 the router, 65535 the IPv4 broadcast.
const (
	firstHost = 2
	lastHost  = 65534
)

// randomTries is how many random picks Allocate makes before it scans: with
// the pool nearly full, random picks keep colliding, and refusing a client
// while addresses are free would be wrong.
const randomTries = 64

// ErrNoFreeAddress is returned when every address is in use.
var ErrNoFreeAddress = errors.New("router: no free address")

// ErrAddressTaken is returned by Claim for an address in use or outside the
// pool.
var ErrAddressTaken = errors.New("router: address not available")

// Owner names who an address pair was handed to: the session's nonce (which
// stays across a client's reconnects) and the sender tag that asked for it.
type Owner struct {
	Nonce  [ipr.NonceSize]byte
	Sender SessionKey
}

// AddrPool hands out client addresses. A client gets one host number, so its
// IPv4 and IPv6 addresses always go together. A released pair is quarantined
// for a while: packets and conntrack state of its last owner must not reach
// the next one, and a client that reconnects may get its pair back. It is
// safe for concurrent use.
type AddrPool struct {
	mu     sync.Mutex
	first  uint16
	last   uint16
	used   [1 << 16 / 64]uint64 // bit n: host number n is taken or quarantined
	inUse  int
	random *rand.Rand

	quarantine time.Duration
	held       map[uint16]hold // quarantined pairs
	order      []queued        // quarantined host numbers, oldest release first
	bySender   map[SessionKey]int
}

// queued is a quarantine in release order; stale when the pair's hold has
// another until (claimed back, released again).
type queued struct {
	n     uint16
	until time.Time
}

// hold is a quarantined pair: until when, and whose it was.
type hold struct {
	until time.Time
	owner Owner
}

// NewAddrPool returns a pool of every client address in ClientNetV4 and
// ClientNetV6.
func NewAddrPool() *AddrPool { return newAddrPool(firstHost, lastHost, nil) }

// newAddrPool returns a pool of host numbers first..last; tests shrink it.
// A nil random source is seeded from crypto/rand.
func newAddrPool(first, last uint16, random *rand.Rand) *AddrPool {
	if random == nil {
		var seed [32]byte
		crand.Read(seed[:])
		random = rand.New(rand.NewChaCha8(seed))
	}
	return &AddrPool{first: first, last: last, random: random,
		held: make(map[uint16]hold), bySender: make(map[SessionKey]int)}
}

// SetQuarantine sets how long a released pair stays out of use; zero hands
// it out again at once. The Router sets it from Config.AddrQuarantine.
func (p *AddrPool) SetQuarantine(d time.Duration) {
	p.mu.Lock()
	p.quarantine = d
	p.mu.Unlock()
}

// Size is the number of addresses the pool can hand out.
func (p *AddrPool) Size() int { return int(p.last) - int(p.first) + 1 }

// InUse is the number of addresses handed out and not released.
func (p *AddrPool) InUse() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.inUse
}

// Quarantined is the number of released pairs not yet free again, and how
// many of them sender released.
func (p *AddrPool) Quarantined(sender SessionKey, now time.Time) (all, bySender int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.expire(now)
	return len(p.held), p.bySender[sender]
}

// Allocate takes a free address pair at random.
func (p *AddrPool) Allocate(now time.Time) (ipr.AddrPair, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.expire(now)
	if p.inUse+len(p.held) == p.Size() {
		return ipr.AddrPair{}, ErrNoFreeAddress
	}
	span := uint32(p.Size())
	start := p.random.Uint32N(span)
	for range randomTries {
		if n := p.first + uint16(start); !p.isUsed(n) {
			return p.take(n), nil
		}
		start = p.random.Uint32N(span)
	}
	for i := range span {
		if n := p.first + uint16((start+i)%span); !p.isUsed(n) {
			return p.take(n), nil
		}
	}
	return ipr.AddrPair{}, ErrNoFreeAddress // unreachable while inUse is right
}

// Claim takes back the pair that want names by either or both of its
// addresses, if owner released it and it is still quarantined: a
// reconnecting client keeps its addresses. Nobody may claim any other pair,
// free or not: a chosen address would let one client follow another's
// traffic, or pick its neighbours.
func (p *AddrPool) Claim(want ipr.AddrPair, owner [ipr.NonceSize]byte, now time.Time) (ipr.AddrPair, error) {
	n, ok := p.hostOf(want)
	if !ok {
		return ipr.AddrPair{}, fmt.Errorf("%w: %v is not one client's pair", ErrAddressTaken, want)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.expire(now)
	h, held := p.held[n]
	if !held || h.owner.Nonce != owner {
		return ipr.AddrPair{}, fmt.Errorf("%w: %v was not this session's", ErrAddressTaken, pairOf(n))
	}
	p.unhold(n, h)
	p.inUse++ // the bit stays set
	return pairOf(n), nil
}

// Release returns a pair to the pool, into quarantine under its owner.
// Releasing a free or foreign pair does nothing.
func (p *AddrPool) Release(a ipr.AddrPair, owner Owner, now time.Time) {
	n, ok := p.hostOf(a)
	if !ok {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, held := p.held[n]; !p.isUsed(n) || held {
		return
	}
	p.inUse--
	if p.quarantine <= 0 {
		p.used[n/64] &^= 1 << (n % 64)
		return
	}
	h := hold{until: now.Add(p.quarantine), owner: owner}
	p.held[n] = h
	p.order = append(p.order, queued{n: n, until: h.until})
	p.bySender[owner.Sender]++
}

// expire frees the quarantined pairs whose time is up. The quarantine is
// the same for all, so order is by expiry too. Called with mu held.
func (p *AddrPool) expire(now time.Time) {
	for len(p.order) > 0 {
		q := p.order[0]
		h, held := p.held[q.n]
		if held = held && h.until.Equal(q.until); held && now.Before(h.until) {
			return
		}
		p.order = p.order[1:]
		if held { // else claimed back since: skip
			p.unhold(q.n, h)
			p.used[q.n/64] &^= 1 << (q.n % 64)
		}
	}
}

// unhold ends n's quarantine record. Called with mu held.
func (p *AddrPool) unhold(n uint16, h hold) {
	delete(p.held, n)
	if p.bySender[h.owner.Sender]--; p.bySender[h.owner.Sender] <= 0 {
		delete(p.bySender, h.owner.Sender)
	}
	if len(p.order) == 0 {
		p.order = nil // let the backing array go
	}
}

func (p *AddrPool) isUsed(n uint16) bool { return p.used[n/64]&(1<<(n%64)) != 0 }

func (p *AddrPool) take(n uint16) ipr.AddrPair {
	p.used[n/64] |= 1 << (n % 64)
	p.inUse++
	return pairOf(n)
}

// hostOf returns the host number of a pair given by one or both addresses;
// both, when given, must name the same host, inside this pool.
func (p *AddrPool) hostOf(a ipr.AddrPair) (uint16, bool) {
	n4, ok4 := hostOf4(a.V4)
	n6, ok6 := hostOf6(a.V6)
	var n uint16
	switch {
	case ok4 && ok6 && n4 == n6, ok4 && !a.V6.IsValid():
		n = n4
	case ok6 && !a.V4.IsValid():
		n = n6
	default:
		return 0, false
	}
	return n, n >= p.first && n <= p.last
}

func hostOf4(a netip.Addr) (uint16, bool) {
	if !a.Is4() || !ipr.ClientNetV4.Contains(a) {
		return 0, false
	}
	b := a.As4()
	return uint16(b[2])<<8 | uint16(b[3]), true
}

func hostOf6(a netip.Addr) (uint16, bool) {
	if !a.Is6() || a.Zone() != "" || !ipr.ClientNetV6.Contains(a) {
		return 0, false
	}
	b := a.As16()
	return uint16(b[14])<<8 | uint16(b[15]), true
}

func pairOf(n uint16) ipr.AddrPair {
	v4 := ipr.ClientNetV4.Addr().As4()
	v4[2], v4[3] = byte(n>>8), byte(n)
	v6 := ipr.ClientNetV6.Addr().As16()
	v6[14], v6[15] = byte(n>>8), byte(n)
	return ipr.AddrPair{V4: netip.AddrFrom4(v4), V6: netip.AddrFrom16(v6)}
}
