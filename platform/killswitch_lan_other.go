//go:build !linux

package platform

import "fmt"

// UplinkLAN is not supported on this platform yet.
func UplinkLAN() ([]LocalNet, error) {
	return nil, fmt.Errorf("local networks: %w", ErrUnsupported)
}
