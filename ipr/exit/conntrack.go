package exit

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"

	"github.com/nym-go/nym/ipr"
)

// conntrackFlusher deletes the conntrack entries of the addresses the
// router releases, off the request path: the deletion walks the whole
// table, and the router calls Released with its lock held. The addresses
// stay in the pool's quarantine meanwhile, which outlasts a flush by far.
type conntrackFlusher struct {
	flush func(...netip.Addr) (int, error)
	log   *slog.Logger
	wake  chan struct{}

	mu      sync.Mutex
	pending []netip.Addr
}

func newConntrackFlusher(flush func(...netip.Addr) (int, error), log *slog.Logger) *conntrackFlusher {
	return &conntrackFlusher{flush: flush, log: log, wake: make(chan struct{}, 1)}
}

// released queues a pair; it never blocks (router.Config.Released).
func (f *conntrackFlusher) released(a ipr.AddrPair) {
	f.mu.Lock()
	f.pending = append(f.pending, a.V4, a.V6)
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// run flushes what was released, in batches, until ctx ends; what is
// pending then is flushed once more.
func (f *conntrackFlusher) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			f.flushPending()
			return
		case <-f.wake:
			f.flushPending()
		}
	}
}

func (f *conntrackFlusher) flushPending() {
	f.mu.Lock()
	addrs := f.pending
	f.pending = nil
	f.mu.Unlock()
	if len(addrs) == 0 {
		return
	}
	n, err := f.flush(addrs...)
	if err != nil {
		f.log.Warn("flushing released addresses' conntrack entries", "addrs", len(addrs), "err", err)
		return
	}
	f.log.Debug("conntrack entries of released addresses flushed", "addrs", len(addrs), "entries", n)
}
