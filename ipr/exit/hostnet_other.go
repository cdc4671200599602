//go:build !linux

package exit

import (
	"errors"
	"net/netip"

	"github.com/nym-go/nym/platform"
	"github.com/nym-go/nym/tun"
)

type hostNet struct {
	dev tun.KernelDevice
}

func openHostNet(*Config, int) (*hostNet, error) { return nil, platform.ErrUnsupported }

func (h *hostNet) close() error { return nil }

func (h *hostNet) flushConntrack(...netip.Addr) (int, error) { return 0, platform.ErrUnsupported }

// DefaultUplink is not available off Linux.
func DefaultUplink() (string, error) { return "", errors.New("exit: only Linux is supported") }
