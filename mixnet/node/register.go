package node

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/nym-go/nym/mixnet/directory"
)

// registerAll sends sd to every authority of the network at once, so that
// each can vote for the node: a node needs a majority of them to list it.
// One authority failing does not stop the others; the failures are logged
// by name. It errs only when no authority took the registration, and then
// names each one's reason.
//
// The answer returned is the one whose rotation most authorities report
// (ties: the lower rotation), so that one authority alone cannot make the
// node announce keys for a rotation the others are not at.
func (n *Node) registerAll(ctx context.Context, sd directory.SignedDescriptor) (*directory.Registration, error) {
	regs := make([]*directory.Registration, len(n.registrars))
	errs := make([]error, len(n.registrars))
	var wg sync.WaitGroup
	for i, c := range n.registrars {
		wg.Go(func() { regs[i], errs[i] = c.RegisterWithStatus(ctx, sd) })
	}
	wg.Wait()
	votes := make(map[uint64]int)
	var best *directory.Registration
	var failed []error
	for i, a := range n.network.Authorities {
		if errs[i] != nil {
			failed = append(failed, fmt.Errorf("%s: %w", a, errs[i]))
			if ctx.Err() == nil {
				n.log.Warn("registration refused or failed", "authority", a.Name, "url", a.URL, "err", errs[i])
			}
			continue
		}
		r := regs[i]
		votes[r.Rotation]++
		if best == nil || votes[r.Rotation] > votes[best.Rotation] ||
			(votes[r.Rotation] == votes[best.Rotation] && r.Rotation < best.Rotation) {
			best = r
		}
	}
	if best == nil {
		return nil, fmt.Errorf("no authority took the registration: %w", errors.Join(failed...))
	}
	if len(failed) > 0 {
		n.log.Info("registered with some authorities", "ok", len(n.registrars)-len(failed), "of", len(n.registrars))
	}
	return best, nil
}

// backoff spaces out retries after failures: the wait doubles from min at
// each failure up to max, and is drawn at random from its upper half, so
// that nodes cut off together (an authority outage) do not all come back
// at the same instant and do not ask several times a second meanwhile.
type backoff struct {
	min, max time.Duration
	failures int
}

// next returns the wait before the next attempt and counts a failure.
func (b *backoff) next() time.Duration {
	d := b.min
	for range b.failures {
		if d >= b.max/2 {
			d = b.max
			break
		}
		d *= 2
	}
	d = min(d, b.max)
	b.failures++
	return d/2 + rand.N(d/2+1)
}

// reset forgets the failures after a success.
func (b *backoff) reset() { b.failures = 0 }
