package replay

import (
	"fmt"
	"math"
	"time"
)

// Defaults for a node's replay filters; see the package documentation for the
// reasoning.
const (
	// DefaultRate is the packet rate, averaged over a key's life, that the
	// default capacity is sized for.
	DefaultRate = 500
	// DefaultKeyLifetime is how long a Sphinx key accepts packets: a rotation
	// of 24 one-hour epochs plus one epoch of overlap (Nym's values).
	DefaultKeyLifetime = 25 * time.Hour
	// DefaultCapacity is DefaultRate over DefaultKeyLifetime: 45 M tags.
	DefaultCapacity = DefaultRate * uint64(DefaultKeyLifetime/time.Second)
	// DefaultFPRate is the false-positive target at capacity (Nym's value).
	DefaultFPRate = 1e-5
)

// Limits on what New accepts.
const (
	// MinFPRate is the smallest target New accepts. Below it the exact
	// false-positive computation loses precision, and the filter would need
	// more bits per block than a 32-byte tag supplies.
	MinFPRate = 1e-9
	// MaxFPRate is the largest target New accepts.
	MaxFPRate = 0.5
	// MaxBytes bounds a filter's memory, so that a mistyped capacity is an
	// error rather than an out-of-memory crash.
	MaxBytes = 64 << 30
)

// CapacityFor is the capacity a filter needs to hold every tag of a key that
// receives rate packets per second for lifetime.
func CapacityFor(rate float64, lifetime time.Duration) uint64 {
	n := math.Ceil(rate * lifetime.Seconds())
	if !(n > 0) { // also catches NaN
		return 0
	}
	if n >= math.MaxUint64 {
		return math.MaxUint64
	}
	return uint64(n)
}

// geometry is a filter's shape: how many blocks and how many bits each tag
// sets in its block.
type geometry struct {
	blocks uint64
	hashes int
}

// size picks the geometry with the fewest blocks whose false-positive rate
// with capacity tags inserted is at most fpRate.
func size(capacity uint64, fpRate float64) (geometry, error) {
	if capacity == 0 {
		return geometry{}, fmt.Errorf("replay: capacity must be positive")
	}
	if !(fpRate >= MinFPRate && fpRate <= MaxFPRate) {
		return geometry{}, fmt.Errorf("replay: false-positive rate %g outside [%g, %g]", fpRate, MinFPRate, MaxFPRate)
	}
	// For each hash count, find the largest load (tags per block) that meets
	// the target, then keep the hash count that allows the largest load.
	best := geometry{}
	bestLoad := 0.0
	for k := 1; k <= maxHashes; k++ {
		lo, hi := 0.0, float64(blockBits)
		for range 60 {
			mid := (lo + hi) / 2
			if falsePositiveRate(mid, k) <= fpRate {
				lo = mid
			} else {
				hi = mid
			}
		}
		if lo > bestLoad {
			bestLoad, best.hashes = lo, k
		}
	}
	if bestLoad == 0 {
		return geometry{}, fmt.Errorf("replay: cannot meet false-positive rate %g", fpRate)
	}
	blocks := math.Ceil(float64(capacity) / bestLoad)
	if blocks*blockBytes > MaxBytes {
		return geometry{}, fmt.Errorf("replay: capacity %d at false-positive rate %g needs %.0f bytes, more than the %d limit",
			capacity, fpRate, blocks*blockBytes, uint64(MaxBytes))
	}
	best.blocks = uint64(blocks)
	return best, nil
}

// falsePositiveRate is the probability that a tag never inserted is reported as seen,
// when tags set k bits each in blocks holding load tags on average.
//
// Tags spread over many blocks, so the number in the queried block is Poisson
// with mean load. A query sets k positions, d of them distinct, and is a false
// positive when every one of those d bits was set by the T = k·j throws of the
// j tags in its block. By inclusion–exclusion over which of the d bits were
// missed, P(all hit | T) = Σᵢ (−1)ⁱ C(d,i) (1 − i/s)ᵀ, and averaging over
// j ~ Poisson(load) gives E[zᵏʲ] = exp(load·(zᵏ − 1)). The result is exact up
// to the Poisson approximation, unlike the classic (1 − e^(−kn/m))ᵏ, which
// ignores how unevenly blocks fill.
func falsePositiveRate(load float64, k int) float64 {
	const s = blockBits
	distinct := distinctPositions(k, s)
	var total float64
	for d := 1; d <= k; d++ {
		if distinct[d] == 0 {
			continue
		}
		var sum, binom float64 = 0, 1
		for i := 0; i <= d; i++ {
			z := 1 - float64(i)/s
			term := binom * math.Exp(load*(math.Pow(z, float64(k))-1))
			if i%2 == 1 {
				term = -term
			}
			sum += term
			binom = binom * float64(d-i) / float64(i+1)
		}
		total += distinct[d] * math.Max(sum, 0)
	}
	return total
}

// distinctPositions returns p where p[d] is the probability that k positions
// drawn uniformly with replacement from s are d distinct ones.
func distinctPositions(k, s int) []float64 {
	p := make([]float64, k+1)
	p[0] = 1
	for range k {
		next := make([]float64, k+1)
		for d, pd := range p {
			if pd == 0 {
				continue
			}
			next[d] += pd * float64(d) / float64(s)
			if d < k {
				next[d+1] += pd * float64(s-d) / float64(s)
			}
		}
		p = next
	}
	return p
}

// BytesFor is the memory a filter made by New(capacity, fpRate) takes, or the
// error New would return. Configuration checks use it to refuse bad settings
// before any memory is allocated.
func BytesFor(capacity uint64, fpRate float64) (uint64, error) {
	g, err := size(capacity, fpRate)
	if err != nil {
		return 0, err
	}
	return g.blocks * blockBytes, nil
}
