package platform

import "net/netip"

// SMTPPorts are the TCP ports of mail submission and relay, refused to
// clients before the operator's policy: an anonymous exit is a spammer's
// dream. 25 is relay, 465 and 587 submission (RFC 8314, RFC 6409).
var SMTPPorts = []uint16{25, 465, 587}

// PrivateDestinations are the ranges clients may not reach through the exit
// (unless ExitConfig.AllowPrivate says otherwise): the entries of the IANA
// IPv4 and IPv6 special-purpose address registries that are not globally
// reachable, multicast, and the IPv6 forms that carry one of the IPv4
// ranges inside them (NAT64, 6to4). The exit's own network and its
// neighbours live there.
//
// The documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24,
// 2001:db8::/32, 3fff::/20) are left out on purpose: no internet route
// leads to them, so they cannot reach anything the exit's neighbourhood
// owns, and test networks use them as their internet. What the exit host
// itself can reach on other interfaces is cut off by the forward chain
// (clients' packets leave by the uplink only), not by this list.
var PrivateDestinations = privateDestinations()

// privateV4 are the IPv4 ranges, each also rejected inside NAT64 and 6to4
// addresses.
var privateV4 = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),      // "this network"
	netip.MustParsePrefix("10.0.0.0/8"),     // private
	netip.MustParsePrefix("100.64.0.0/10"),  // shared (carrier-grade NAT)
	netip.MustParsePrefix("127.0.0.0/8"),    // loopback
	netip.MustParsePrefix("169.254.0.0/16"), // link-local
	netip.MustParsePrefix("172.16.0.0/12"),  // private
	netip.MustParsePrefix("192.0.0.0/24"),   // IETF protocol assignments
	netip.MustParsePrefix("192.88.99.0/24"), // 6to4 relay anycast (deprecated)
	netip.MustParsePrefix("192.168.0.0/16"), // private
	netip.MustParsePrefix("198.18.0.0/15"),  // benchmarking
	netip.MustParsePrefix("224.0.0.0/4"),    // multicast
	netip.MustParsePrefix("240.0.0.0/4"),    // reserved, and the limited broadcast
	netip.MustParsePrefix("255.255.255.255/32"),
}

// privateV6 are the IPv6 ranges. 2001::/23 (IETF protocol assignments) is
// listed by its parts that are not globally reachable: it also holds
// anycast services (AS112, PCP, TURN) that clients may use.
var privateV6 = []netip.Prefix{
	netip.MustParsePrefix("::/96"),          // unspecified, loopback, IPv4-compatible (deprecated)
	netip.MustParsePrefix("::ffff:0:0/96"),  // IPv4-mapped: never on the wire
	netip.MustParsePrefix("64:ff9b:1::/48"), // local-use NAT64
	netip.MustParsePrefix("100::/64"),       // discard-only
	netip.MustParsePrefix("100:0:0:1::/64"), // dummy prefix
	netip.MustParsePrefix("2001::/32"),      // Teredo: the IPv4 inside is obfuscated, refuse it all
	netip.MustParsePrefix("2001:2::/48"),    // benchmarking
	netip.MustParsePrefix("2001:10::/28"),   // ORCHID (deprecated)
	netip.MustParsePrefix("5f00::/16"),      // SRv6 SIDs
	netip.MustParsePrefix("fc00::/7"),       // unique local
	netip.MustParsePrefix("fe80::/10"),      // link-local
	netip.MustParsePrefix("fec0::/10"),      // site-local (deprecated)
	netip.MustParsePrefix("ff00::/8"),       // multicast
}

// embedsIPv4 are IPv6 ranges whose next 32 bits are an IPv4 address that a
// gateway on the way turns the packet into: the well-known NAT64 prefix
// (RFC 6052) and 6to4 (RFC 3056). Each IPv4 range in privateV4 is rejected
// inside them too.
var embedsIPv4 = []netip.Prefix{
	netip.MustParsePrefix("64:ff9b::/96"),
	netip.MustParsePrefix("2002::/16"),
}

func privateDestinations() []netip.Prefix {
	out := append(append([]netip.Prefix(nil), privateV4...), privateV6...)
	for _, outer := range embedsIPv4 {
		for _, p := range privateV4 {
			out = append(out, embedIPv4(outer, p))
		}
	}
	return out
}

// embedIPv4 returns the part of outer whose embedded IPv4 address lies in
// inner.
func embedIPv4(outer, inner netip.Prefix) netip.Prefix {
	b := outer.Addr().As16()
	v4 := inner.Addr().As4()
	copy(b[outer.Bits()/8:], v4[:])
	return netip.PrefixFrom(netip.AddrFrom16(b), outer.Bits()+inner.Bits())
}

// IsPrivateDestination reports whether clients are refused dst as private:
// it lies in PrivateDestinations and in none of allow. It is the reference
// for the nftables rules.
func IsPrivateDestination(dst netip.Addr, allow []netip.Prefix) bool {
	for _, p := range allow {
		if p.Contains(dst) {
			return false
		}
	}
	for _, p := range PrivateDestinations {
		if p.Contains(dst) {
			return true
		}
	}
	return false
}
