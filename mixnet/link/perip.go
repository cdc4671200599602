package link

import (
	"net"
	"net/netip"
	"sync"
)

// perIP counts a Server's connections by source, in two stages: handshakes
// in progress and established links. A source is an IPv4 address or an
// IPv6 /64, since one IPv6 host usually holds a whole /64 and could
// otherwise take a fresh address for every connection.
type perIP struct {
	maxHandshakes, maxConns int // 0: unbounded

	mu     sync.Mutex
	counts map[netip.Prefix]*ipCount
}

type ipCount struct{ handshakes, conns int }

func newPerIP(maxHandshakes, maxConns int) *perIP {
	return &perIP{maxHandshakes: maxHandshakes, maxConns: maxConns, counts: make(map[netip.Prefix]*ipCount)}
}

// SourceOf is the source a connection from addr is counted under: its IPv4
// address, or its IPv6 /64. Addresses that are not TCP (a test's pipe, a
// Unix socket) all share the zero prefix.
func SourceOf(addr net.Addr) netip.Prefix {
	ta, ok := addr.(*net.TCPAddr)
	if !ok {
		return netip.Prefix{}
	}
	ip := ta.AddrPort().Addr().Unmap()
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p
}

// startHandshake reserves a handshake slot for src and reports whether one
// was free. max, when above 0, is src's bound in place of maxHandshakes.
func (p *perIP) startHandshake(src netip.Prefix, max int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.counts[src]
	if c == nil {
		c = new(ipCount)
		p.counts[src] = c
	}
	if max <= 0 {
		max = p.maxHandshakes
	}
	if max > 0 && c.handshakes >= max {
		return false
	}
	c.handshakes++
	return true
}

// established frees src's handshake slot and, if ok (the handshake passed),
// takes a connection slot; it reports whether one was free.
func (p *perIP) established(src netip.Prefix, ok bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.counts[src]
	c.handshakes--
	if ok && (p.maxConns <= 0 || c.conns < p.maxConns) {
		c.conns++
		return true
	}
	p.forgetLocked(src, c)
	return false
}

// closed frees src's connection slot.
func (p *perIP) closed(src netip.Prefix) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.counts[src]
	c.conns--
	p.forgetLocked(src, c)
}

// forgetLocked drops an entry that counts nothing, so the map holds only
// sources with connections.
func (p *perIP) forgetLocked(src netip.Prefix, c *ipCount) {
	if c.handshakes == 0 && c.conns == 0 {
		delete(p.counts, src)
	}
}
