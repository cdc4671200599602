package ipr

import "net/netip"

// The exit TUN's addresses and the client networks (Nym's values).
var (
	RouterIPv4  = netip.MustParseAddr("10.0.0.1")
	RouterIPv6  = netip.MustParseAddr("fc00::1")
	ClientNetV4 = netip.MustParsePrefix("10.0.0.0/16")
	ClientNetV6 = netip.MustParsePrefix("fc00::/112")
)

// AddrPair is the IPv4 and IPv6 address of one client.
type AddrPair struct {
	V4, V6 netip.Addr
}

func (a AddrPair) String() string { return a.V4.String() + "," + a.V6.String() }
