//go:build !linux

package platform

import (
	"fmt"

	"github.com/vishvananda/netns"
)

// UplinkLAN is not supported on this platform yet.
func UplinkLAN(netns.NsHandle) ([]LocalNet, error) {
	return nil, fmt.Errorf("local networks: %w", ErrUnsupported)
}
