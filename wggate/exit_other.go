//go:build !linux

package wggate

import (
	"errors"
	"log/slog"
	"net/netip"

	wgtun "golang.zx2c4.com/wireguard/tun"
)

func createExitTUN(string, int, netip.Prefix, netip.Prefix, *slog.Logger) (wgtun.Device, error) {
	return nil, errors.New("wggate: the exit's WireGuard door needs Linux")
}
