//go:build !linux

package platform

import (
	"fmt"
	"net/netip"
)

// ExitNetworking is the exit host's forwarding, NAT and exit policy.
type ExitNetworking struct{}

// StartExitNetworking is not supported on this platform yet.
func StartExitNetworking(ExitConfig) (*ExitNetworking, error) {
	return nil, fmt.Errorf("exit networking: %w", ErrUnsupported)
}

// SetPolicy is not supported on this platform yet.
func (*ExitNetworking) SetPolicy(*ExitPolicy) error {
	return fmt.Errorf("exit networking: %w", ErrUnsupported)
}

// Rejected is not supported on this platform yet.
func (*ExitNetworking) Rejected() (map[string]Counter, error) {
	return nil, fmt.Errorf("exit networking: %w", ErrUnsupported)
}

// FlushConntrack is not supported on this platform yet.
func (*ExitNetworking) FlushConntrack(...netip.Addr) (int, error) {
	return 0, fmt.Errorf("exit networking: %w", ErrUnsupported)
}

// Close does nothing: nothing was started.
func (*ExitNetworking) Close() error { return nil }

func restoreExit(*exitRecord) error { return fmt.Errorf("exit networking: %w", ErrUnsupported) }

// FlushConntrack is not supported on this platform yet.
func FlushConntrack(...netip.Addr) (int, error) {
	return 0, fmt.Errorf("conntrack: %w", ErrUnsupported)
}
