package gateway

import (
	"net/netip"
	"sync"

	"golang.org/x/time/rate"
)

// sources holds one token bucket per source address (link.SourceOf) with
// clients connected, shared by all of them: each identity has its own
// bucket, but identities cost nothing, so without this one host could
// multiply ClientRate by MaxClientsPerIP.
type sources struct {
	rate  rate.Limit
	burst int

	mu      sync.Mutex
	buckets map[netip.Prefix]*sourceBucket
}

type sourceBucket struct {
	limit *rate.Limiter
	links int
}

func newSources(r float64, burst int) *sources {
	return &sources{rate: rate.Limit(r), burst: burst, buckets: make(map[netip.Prefix]*sourceBucket)}
}

// acquire returns src's bucket for one more link; release gives it back. A
// bucket lives while its source has links, so it stays bounded by the
// connections the gateway admits.
func (s *sources) acquire(src netip.Prefix) *rate.Limiter {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.buckets[src]
	if b == nil {
		b = &sourceBucket{limit: rate.NewLimiter(s.rate, s.burst)}
		s.buckets[src] = b
	}
	b.links++
	return b.limit
}

func (s *sources) release(src netip.Prefix) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.buckets[src]
	if b == nil {
		return
	}
	if b.links--; b.links <= 0 {
		delete(s.buckets, src)
	}
}
