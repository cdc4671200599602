//go:build !linux

package platform

import "fmt"

// Routes is the host's routing set up to send everything through the TUN.
type Routes struct{}

// ApplyRoutes is not supported on this platform yet.
func ApplyRoutes(RouteConfig) (*Routes, error) {
	return nil, fmt.Errorf("routes: %w", ErrUnsupported)
}

// Remove does nothing: nothing was applied.
func (*Routes) Remove() error { return nil }

func restoreRoutes(*routeRecord) error { return fmt.Errorf("routes: %w", ErrUnsupported) }
