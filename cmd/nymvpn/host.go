package main

import (
	"net/netip"

	"github.com/nym-go/nym/tun"
)

// host changes this machine's networking for the tunnel: TUN, routes, DNS,
// kill switch. Each OS has its own (host_linux.go, host_other.go).
//
// Only the daemon's own sockets (marked with fwMark, see outside) leave
// outside the tunnel, and the kill switch lets out only those, to the
// directory and to the gateways opened with Open: never an address because
// the directory lists it.
type host interface {
	// KillSwitch blocks everything but loopback, the TUN (once it exists),
	// the daemon's marked TCP to dir and to the gateways opened with Open.
	// It stays on through reconnects, failed connects and daemon restarts,
	// until Down.
	KillSwitch(dir netip.AddrPort) error
	// KillSwitchOn tells whether the kill switch is in force (perhaps kept
	// from an earlier run of the daemon).
	KillSwitchOn() bool
	// Open lets the daemon's marked TCP to gw through the kill switch until
	// release is called; without a kill switch it does nothing.
	Open(gw netip.AddrPort) (release func(), err error)
	// OpenUDP is Open for the daemon's marked UDP: fast mode's WireGuard
	// to the entry gateway.
	OpenUDP(gw netip.AddrPort) (release func(), err error)
	// Up creates the TUN with the tunnel's addresses and MTU and sends the
	// host's traffic (all but the marked sockets') and DNS through it.
	Up(addrs []netip.Prefix, mtu int, dns []netip.Addr) (tun.Device, error)
	// Unroute undoes Up (routes, DNS) but keeps the kill switch: after a
	// failed connect nothing may leak until the user disconnects.
	Unroute() error
	// SetAllowLAN lets the uplink's local networks through the kill switch
	// (on) or not (off), at once if it is in force, and at every later
	// update. The local networks are looked up again at each update (a
	// connect, a reconnect, another gateway), so they follow the uplink.
	// Routing needs no change: the tunnel's rules leave the main table's
	// routes to connected networks in force (suppress_prefixlength 0).
	SetAllowLAN(on bool) error
	// Down undoes everything, kill switch included.
	Down() error
}
