package platform

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// UplinkLAN lists the local networks of the uplinks, in the calling
// thread's network namespace: the private, link-local and unique local
// prefixes of the addresses on each link that holds a default route of the
// main table, on that link alone. Other links (bridges, other VPNs, a second
// card) are not the LAN the user stands in. With no default route there is
// no uplink, and no LAN.
func UplinkLAN() ([]LocalNet, error) {
	nl, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("local networks: netlink: %w", err)
	}
	defer nl.Close()
	uplinks := make(map[int]bool)
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		routes, err := nl.RouteListFiltered(family, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return nil, fmt.Errorf("local networks: list routes: %w", err)
		}
		for _, r := range routes {
			if r.Dst != nil && prefixOf(r.Dst).Bits() != 0 {
				continue
			}
			if r.LinkIndex > 0 {
				uplinks[r.LinkIndex] = true
			}
			for _, nh := range r.MultiPath {
				if nh.LinkIndex > 0 {
					uplinks[nh.LinkIndex] = true
				}
			}
		}
	}
	var lan []LocalNet
	for index := range uplinks {
		link, err := nl.LinkByIndex(index)
		if isLinkGone(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("local networks: link %d: %w", index, err)
		}
		addrs, err := nl.AddrList(link, netlink.FAMILY_ALL)
		if err != nil {
			return nil, fmt.Errorf("local networks: addresses of %s: %w", link.Attrs().Name, err)
		}
		for _, a := range addrs {
			if p, ok := localNetOf(prefixOf(a.IPNet)); ok {
				lan = appendNew(lan, LocalNet{Link: link.Attrs().Name, Prefix: p})
			}
		}
	}
	// A stable order: the same network gives the same rules.
	slices.SortFunc(lan, func(a, b LocalNet) int {
		return cmp.Or(cmp.Compare(a.Link, b.Link), a.Prefix.Addr().Compare(b.Prefix.Addr()), cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits()))
	})
	return lan, nil
}

// addLANRules queues the allow-LAN exceptions: to and from each local
// network on its own link, any protocol, connections either way (the
// printer, a share, ssh from the laptop next door), and the link-local
// multicast of service discovery on a link that has a local network of that
// family. Nothing else of the link passes: its default gateway is still the
// way to the internet, which stays behind the kill switch.
func addLANRules(c *nftables.Conn, t *nftables.Table, out, in *nftables.Chain, lan []LocalNet) {
	multicast := make(map[LocalNet]bool)
	for _, n := range lan {
		c.AddRule(rule(t, out, oifname(n.Link), matchAddr(n.Prefix, true), one(accept())))
		c.AddRule(rule(t, in, iifname(n.Link), matchAddr(n.Prefix, false), one(accept())))
		for _, m := range lanMulticast {
			ln := LocalNet{Link: n.Link, Prefix: m}
			if m.Addr().Is4() == n.Prefix.Addr().Is4() && !multicast[ln] {
				multicast[ln] = true
				c.AddRule(rule(t, out, oifname(n.Link), matchAddr(m, true), one(accept())))
			}
		}
	}
}
