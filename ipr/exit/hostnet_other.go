//go:build !linux

package exit

import (
	"errors"
	"net/netip"

	"github.com/nym-go/nym/platform"
	"github.com/nym-go/nym/tun"
)

// systemHost: the exit's host networking exists on Linux only.
type systemHost struct{}

func newSystemHost(*Config) Host { return systemHost{} }

func (systemHost) Up(tun.Device) ([]netip.Addr, error) { return nil, platform.ErrUnsupported }

func (systemHost) FlushConntrack(...netip.Addr) (int, error) { return 0, platform.ErrUnsupported }

func (systemHost) Close() error { return nil }

// DefaultUplink is not available off Linux.
func DefaultUplink() (string, error) { return "", errors.New("exit: only Linux is supported") }
