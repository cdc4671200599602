package wggate

import (
	"sync"
	"time"

	"github.com/nym-go/nym/wgreg"
)

// nonceCache remembers the nonces of accepted registrations until they
// could no longer pass the clock check, so a replayed request is refused.
type nonceCache struct {
	max  int
	keep time.Duration

	mu   sync.Mutex
	seen map[[wgreg.NonceSize]byte]time.Time // nonce → forget after
}

func newNonceCache(max int, keep time.Duration) *nonceCache {
	return &nonceCache{max: max, keep: keep, seen: make(map[[wgreg.NonceSize]byte]time.Time)}
}

// add records n and reports whether it is new. When the cache is full it
// refuses everything: forgetting early would let replays through.
func (c *nonceCache) add(n [wgreg.NonceSize]byte, now time.Time) (fresh, full bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.seen[n]; ok {
		return false, false
	}
	if len(c.seen) >= c.max {
		return false, true
	}
	c.seen[n] = now.Add(c.keep)
	return true, false
}

func (c *nonceCache) prune(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for n, until := range c.seen {
		if now.After(until) {
			delete(c.seen, n)
		}
	}
}
