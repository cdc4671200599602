package platform

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// LocalNet is a local network the kill switch lets through outside the
// tunnel (allow-LAN): destinations in Prefix, out of and into Link only.
type LocalNet struct {
	Link   string
	Prefix netip.Prefix
}

func (n LocalNet) String() string { return n.Prefix.String() + " on " + n.Link }

// lanRanges are the only addresses that can be a local network: private
// (RFC 1918), link-local (169.254/16, fe80::/10) and unique local (fc00::/7).
// Anything else on the uplink, a public prefix or a /0 a hostile DHCP server
// handed out, is the internet and stays behind the kill switch.
var lanRanges = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("fc00::/7"),
	netip.MustParsePrefix("fe80::/10"),
}

// lanMulticast is the link-local multicast that service discovery (mDNS,
// LLMNR: printers, shares) uses; routers never forward it.
var lanMulticast = []netip.Prefix{
	netip.MustParsePrefix("224.0.0.0/24"),
	netip.MustParsePrefix("ff02::/16"),
}

// localNetOf is the local network an address of the uplink (with its
// prefix length) is connected to, or false if it is none. An address in a
// LAN range with a prefix wider than that range (10.1.2.3/4, or /0) gets the
// range, never the wider prefix: only private addresses become LAN.
func localNetOf(p netip.Prefix) (netip.Prefix, bool) {
	if !p.IsValid() {
		return netip.Prefix{}, false
	}
	a := p.Addr().Unmap()
	bits := p.Bits()
	if p.Addr().Is4In6() {
		bits -= 96
	}
	for _, r := range lanRanges {
		if r.Contains(a) {
			return netip.PrefixFrom(a, max(bits, r.Bits())).Masked(), true
		}
	}
	return netip.Prefix{}, false
}

// inLANRange tells whether all of p lies in one of lanRanges.
func inLANRange(p netip.Prefix) bool {
	return slices.ContainsFunc(lanRanges, func(r netip.Prefix) bool {
		return r.Bits() <= p.Bits() && r.Contains(p.Addr())
	})
}

// validateLAN refuses a local network that is not one: a caller's mistake
// must not open the internet (0.0.0.0/0 "on eth0") outside the tunnel.
func validateLAN(lan []LocalNet) error {
	for _, n := range lan {
		if !validIfname(n.Link) {
			return fmt.Errorf("local network %s: bad link name %q", n.Prefix, n.Link)
		}
		if !n.Prefix.IsValid() || n.Prefix.Addr().Is4In6() {
			return errors.New("local network: invalid prefix")
		}
		if !inLANRange(n.Prefix.Masked()) {
			return fmt.Errorf("local network %s: not a private, link-local or unique local prefix", n)
		}
	}
	return nil
}
