//go:build !linux

package platform

import "fmt"

// KillSwitch drops every packet that is not on the TUN, not on loopback and
// not to or from an allowed endpoint.
type KillSwitch struct{}

// EnableKillSwitch is not supported on this platform yet.
func EnableKillSwitch(string, KillSwitchRules) (*KillSwitch, error) {
	return nil, fmt.Errorf("kill switch: %w", ErrUnsupported)
}

// Update is not supported on this platform yet.
func (*KillSwitch) Update(KillSwitchRules) error {
	return fmt.Errorf("kill switch: %w", ErrUnsupported)
}

// Dropped is not supported on this platform yet.
func (*KillSwitch) Dropped() (Dropped, error) {
	return Dropped{}, fmt.Errorf("kill switch: %w", ErrUnsupported)
}

// Disable is not supported on this platform yet.
func (*KillSwitch) Disable() error { return fmt.Errorf("kill switch: %w", ErrUnsupported) }

// Close does nothing.
func (*KillSwitch) Close() error { return nil }

func restoreKillSwitch(*killSwitchRecord) error {
	return fmt.Errorf("kill switch: %w", ErrUnsupported)
}
