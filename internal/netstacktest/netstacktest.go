// Package netstacktest runs a tunnel's packet loop over a userspace
// network stack (gVisor, no root) for tests: vpn's own tests and the
// anonymity measurement drive their tunnels so.
package netstacktest

import (
	"context"
	"net/netip"
	"testing"

	"github.com/nym-go/nym/tun"
)

// Start runs run (a tunnel's Run) over a new userspace stack with address
// addr and MTU mtu until t ends, and returns the stack: dial and listen
// on it as the tunnel's user. When t ends, run's context is cancelled and
// its return awaited; an error there is reported with t.Errorf. Start does
// not fail t itself, so a helper on a goroutine of its own may call it.
func Start(t testing.TB, addr netip.Addr, mtu int, run func(ctx context.Context, dev tun.Device) error) (*tun.Net, error) {
	dev, stack, err := tun.CreateNetstack([]netip.Addr{addr}, nil, mtu)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, dev) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("netstacktest: run: %v", err)
		}
	})
	return stack, nil
}
