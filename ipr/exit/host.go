package exit

import (
	"net/netip"

	"github.com/nym-go/nym/tun"
)

// Host is the exit's networking on its host: what becomes of the packets
// the router writes to the TUN (addresses, forwarding, NAT, the exit policy's
// nftables rules) and of the internet's answers. Run brings it up around the
// TUN and closes it when it stops. The default (a nil Config.Host) changes
// the host for real; NoHost changes nothing.
type Host interface {
	// Up readies the host around dev, the exit's TUN, in the calling
	// thread's network namespace. It returns the host's own addresses,
	// which no client may reach. On error nothing stays behind.
	Up(dev tun.Device) (own []netip.Addr, err error)
	// FlushConntrack forgets the host's connection tracking of client
	// addresses the router released, so that their next holder inherits
	// no flows; it returns how many entries went.
	FlushConntrack(addrs ...netip.Addr) (int, error)
	// Close undoes Up.
	Close() error
}

// NoHost is a Host that does nothing on the host: no addresses, forwarding,
// NAT or nftables rules, and no host addresses to keep clients from. It is
// for a userspace TUN (tun.CreateNetstack) whose other side is itself the
// internet, as in tests: the exit is then the production service, router
// policy included, without root and without touching the machine.
type NoHost struct{}

// Up does nothing.
func (NoHost) Up(tun.Device) ([]netip.Addr, error) { return nil, nil }

// FlushConntrack does nothing: there is no connection tracking.
func (NoHost) FlushConntrack(...netip.Addr) (int, error) { return 0, nil }

// Close does nothing.
func (NoHost) Close() error { return nil }
