//go:build !linux

package tun

import (
	"fmt"
	"runtime"
)

// CreateKernel would create a kernel TUN interface; only Linux is supported
// so far. Use CreateNetstack, which runs everywhere.
func CreateKernel(name string, mtu int) (KernelDevice, error) {
	return nil, fmt.Errorf("tun: kernel TUN %q: not supported on this platform yet (%s)", name, runtime.GOOS)
}
