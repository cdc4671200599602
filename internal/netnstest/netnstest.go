// Package netnstest runs test code inside a network namespace.
package netnstest

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// Do runs fn on an OS thread locked into the namespace target. Whatever fn
// opens (sockets, TUN devices, netlink and nftables connections) stays bound
// to target and may be used from any goroutine afterwards; goroutines fn
// starts would not run in target, so fn should start none. The thread goes
// back to its namespace afterwards; if it cannot, it stays locked and the
// runtime discards it with its goroutine.
func Do(target netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("current namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			errc <- fmt.Errorf("enter namespace: %w", err)
			return
		}
		err = fn()
		if rerr := netns.Set(orig); rerr != nil {
			errc <- fmt.Errorf("back to the test's namespace: %v (after %v)", rerr, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	return <-errc
}

// DoNamed is Do for the namespace called name (as `ip netns` names it).
func DoNamed(name string, fn func() error) error {
	h, err := netns.GetFromName(name)
	if err != nil {
		return fmt.Errorf("open namespace %s: %w", name, err)
	}
	defer h.Close()
	return Do(h, fn)
}
