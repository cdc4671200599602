package main

import (
	"net/netip"
	"sync"
)

// refusals tells dialers when the exit's policy refused their destination.
// Without it a refused TCP dial through the userspace stack would only time
// out; with it the SOCKS client hears "not allowed by ruleset" at once.
type refusals struct {
	mu      sync.Mutex
	waiters map[netip.AddrPort][]chan struct{}
}

// refused wakes every dial waiting on dst.
func (r *refusals) refused(dst netip.AddrPort) {
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ch := range r.waiters[dst] {
		close(ch)
	}
	delete(r.waiters, dst)
}

// wait returns a channel closed if dst is refused, and a func that stops
// waiting.
func (r *refusals) wait(dst netip.AddrPort) (<-chan struct{}, func()) {
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	ch := make(chan struct{})
	r.mu.Lock()
	if r.waiters == nil {
		r.waiters = map[netip.AddrPort][]chan struct{}{}
	}
	r.waiters[dst] = append(r.waiters[dst], ch)
	r.mu.Unlock()
	return ch, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		list := r.waiters[dst]
		for i, c := range list {
			if c == ch {
				r.waiters[dst] = append(list[:i:i], list[i+1:]...)
				break
			}
		}
		if len(r.waiters[dst]) == 0 {
			delete(r.waiters, dst)
		}
	}
}
