package main

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/nym-go/nym/netmon"
)

// errNetChanged cuts short what went out by an uplink that came back or
// changed meanwhile.
var errNetChanged = errors.New("the network changed")

// watchNetwork follows the host's uplink until ctx ends and tells the
// tunnel, whichever is up, when a usable one comes back or changes, so
// that it reconnects now instead of waiting out a backoff or a stale timer.
// While there is none, nothing is done: the kill switch holds and the
// tunnel's retries back off as they would.
//
// The daemon's sockets carry fwMark and are routed by the main table, so
// a new default gateway is used as soon as the kernel has it; there are
// no host routes to move.
func (d *daemon) watchNetwork(ctx context.Context) {
	m, err := netmon.New(netmon.Config{Ignore: notUplinks, Logger: d.log})
	if err != nil {
		d.log.Warn("network changes will go unnoticed until a timeout", "err", err)
		return
	}
	defer m.Close()
	d.log.Info("watching the uplink", "uplink", m.Current().String())
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-m.Changes():
			if !ok {
				return
			}
			if !ev.Up() {
				d.log.Info("no uplink; the kill switch holds until one is back", "was", ev.Old.String())
				continue
			}
			d.networkChanged()
		}
	}
}

// networkChanged passes a change of the uplink to the tunnel that is up.
func (d *daemon) networkChanged() {
	d.mu.Lock()
	t, ft := d.tunnel, d.fast
	d.mu.Unlock()
	switch {
	case t != nil:
		t.NetworkChanged()
	case ft != nil:
		ft.networkChanged()
	}
}

// untilNetChange runs fn with a context that ends (cause errNetChanged)
// when changes fires meanwhile, and returns fn's error, or errNetChanged
// (wrapping fn's) when the change cut it short.
func untilNetChange(ctx context.Context, changes chan struct{}, fn func(context.Context) error) error {
	fctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		select {
		case <-changes:
			cancel(errNetChanged)
		case <-stop:
		}
	})
	err := fn(fctx)
	close(stop)
	wg.Wait()
	if errors.Is(context.Cause(fctx), errNetChanged) {
		if err == nil {
			// fn got through all the same: keep the change for the
			// next one to see.
			select {
			case changes <- struct{}{}:
			default:
			}
			return nil
		}
		if errors.Is(err, errNetChanged) {
			return err
		}
		return fmt.Errorf("%w (%v)", errNetChanged, err)
	}
	return err
}
