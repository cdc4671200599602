package main

import (
	"net/netip"

	"github.com/nym-go/nym/tun"
)

// host changes this machine's networking for the tunnel: TUN, routes, DNS,
// kill switch. Each OS has its own (host_linux.go, host_other.go).
type host interface {
	// KillSwitch blocks everything but loopback, the TUN (once it exists)
	// and outside; it is kept through reconnects.
	KillSwitch(outside []netip.AddrPort) error
	// Up creates the TUN with the tunnel's addresses and MTU and sends the
	// host's traffic (but outside) and DNS through it.
	Up(addrs []netip.Prefix, mtu int, outside []netip.AddrPort, dns []netip.Addr) (tun.Device, error)
	// Down undoes everything, kill switch included.
	Down() error
}
