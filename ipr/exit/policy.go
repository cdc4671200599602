package exit

import (
	"net/netip"
	"slices"

	"github.com/nym-go/nym/platform"
)

// routerPolicy is the router.Config.Policy of the exit: the same decisions as
// platform's nftables rules (private ranges, SMTP, the operator's list), made
// before the packet reaches the TUN so that the client hears why in an Info
// instead of waiting for a timeout. The nftables rules stay the enforcement.
// own are the exit host's addresses (its uplink's included), which no client
// may reach.
func routerPolicy(p *platform.ExitPolicy, allowPrivate []netip.Prefix, own []netip.Addr) func(netip.AddrPort, uint8) (bool, string) {
	return func(dst netip.AddrPort, proto uint8) (bool, string) {
		a := dst.Addr()
		if slices.Contains(own, a.Unmap()) {
			return false, "the exit host itself"
		}
		// Not unmapped: an IPv4-mapped destination is refused as such,
		// as the nftables rules see it.
		if platform.IsPrivateDestination(a, allowPrivate) {
			return false, "private or local destination"
		}
		if proto == protoTCP && slices.Contains(platform.SMTPPorts, dst.Port()) {
			return false, "SMTP (ports 25, 465, 587) is not allowed"
		}
		if p != nil && !p.Allows(a, proto, dst.Port()) {
			return false, "refused by the exit policy"
		}
		return true, ""
	}
}

const protoTCP = 6
