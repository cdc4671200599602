package client

import (
	crand "crypto/rand"
	"math/rand/v2"
	"sync"
	"time"
)

// maxHopDelay caps a sampled delay. Nodes refuse to hold a packet longer
// (Nym: 10 s), and at any sane mean the cap is reached with negligible
// probability (e^-666 at 15 ms).
const maxHopDelay = 10 * time.Second

// randomSource draws route choices and delays. An observer who could predict
// them could link packets, so it is ChaCha8 seeded from crypto/rand rather
// than a time-seeded generator. Safe for concurrent use.
type randomSource struct {
	mu sync.Mutex
	r  *rand.Rand
}

func newRandomSource() *randomSource {
	var seed [32]byte
	crand.Read(seed[:])
	return &randomSource{r: rand.New(rand.NewChaCha8(seed))}
}

// exp returns an exponentially distributed duration with the given mean, or
// zero for a mean of zero or less.
func (s *randomSource) exp(mean time.Duration) time.Duration {
	if mean <= 0 {
		return 0
	}
	s.mu.Lock()
	x := s.r.ExpFloat64()
	s.mu.Unlock()
	d := x * float64(mean)
	if d >= float64(maxHopDelay) {
		return maxHopDelay
	}
	return time.Duration(d)
}

// float64 returns a uniform number in [0, 1).
func (s *randomSource) float64() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.r.Float64()
}

// uint64 returns a uniform 64-bit number.
func (s *randomSource) uint64() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.r.Uint64()
}

// intN returns a uniform number in [0, n).
func (s *randomSource) intN(n int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.r.IntN(n)
}
