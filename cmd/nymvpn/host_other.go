//go:build !linux

package main

import (
	"errors"
	"net/netip"
	"runtime"

	"github.com/nym-go/nym/tun"
)

var errUnsupported = errors.New("nymvpn: " + runtime.GOOS + " is not supported yet (Linux only)")

type otherHost struct{}

func newHost(statePath string) (host, error) { return nil, errUnsupported }

func (otherHost) KillSwitch(netip.AddrPort) error        { return errUnsupported }
func (otherHost) KillSwitchOn() bool                     { return false }
func (otherHost) Open(netip.AddrPort) (func(), error)    { return func() {}, nil }
func (otherHost) OpenUDP(netip.AddrPort) (func(), error) { return func() {}, nil }
func (otherHost) Up([]netip.Prefix, int, []netip.Addr) (tun.Device, error) {
	return nil, errUnsupported
}
func (otherHost) Unroute() error         { return nil }
func (otherHost) SetAllowLAN(bool) error { return errUnsupported }
func (otherHost) Down() error            { return nil }
