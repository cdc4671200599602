package platform

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// RouteConfig says how to send the host's traffic through the VPN's TUN.
//
// It is policy routing by firewall mark, as wg-quick and Mullvad do it: the
// VPN's own sockets (to the entry gateway and the directory) carry Mark and
// are routed by the main table as before; every other packet is routed by
// Table, whose default routes go into the TUN. No destination is exempt:
// what a directory says about a gateway never decides where the host's
// other traffic goes.
type RouteConfig struct {
	// StatePath is the state file that records each change before it is
	// made, for Restore after a crash.
	StatePath string
	// TUN is the name of the VPN's TUN interface (e.g. "nymvpn0").
	TUN string
	// Addresses are put on the TUN: the addresses the exit allocated.
	Addresses []netip.Prefix
	// Mark is the firewall mark (SO_MARK) of the sockets that bypass the
	// tunnel. Required.
	Mark uint32
	// Table is the routing table of the tunnel's default routes; 0 means
	// the number Mark (as wg-quick does). Not main, local or default.
	Table uint32
}

func (c RouteConfig) validate() error {
	if c.StatePath == "" {
		return errors.New("no state file path")
	}
	if !validIfname(c.TUN) {
		return fmt.Errorf("bad TUN name %q", c.TUN)
	}
	for _, p := range c.Addresses {
		if !p.IsValid() {
			return errors.New("invalid TUN address")
		}
	}
	if c.Mark == 0 {
		return errors.New("no firewall mark for the tunnel's own sockets")
	}
	if t := c.table(); t == mainTable || t == localTable || t == defaultTable {
		return fmt.Errorf("table %d is a table of the system", t)
	}
	return nil
}

func (c RouteConfig) table() uint32 {
	if c.Table != 0 {
		return c.Table
	}
	return c.Mark
}

// MarkTable is the nftables table (family inet) that carries the tunnel's
// mark from a marked connection's packets to its replies, as wg-quick does.
//
// Why: the replies of the gateway arrive unmarked, and a strict reverse
// path filter (rp_filter=1) would look their source up without the mark,
// find the tunnel's table and drop them as arriving on the wrong interface.
// Restoring the mark from the connection (ct mark) before routing, with
// net.ipv4.conf.all.src_valid_mark=1 so the filter uses it, keeps them.
const MarkTable = "nymvpn_mark"

// The system's routing tables, which the tunnel's routes never go into.
const (
	defaultTable = 253
	mainTable    = 254
	localTable   = 255
)

// Priorities of our two rules per family, just before the main table's
// (32766). The first looks up the main table but ignores its default routes
// (so the local network and other specific routes keep working); the second
// sends what lacks the mark to the tunnel's table.
const (
	minRulePriority = 32760
	maxRulePriority = 32761
)

// tunnelDefaults are the routes of the tunnel's table.
var tunnelDefaults = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/0"),
	netip.MustParsePrefix("::/0"),
}

// routeRecord is what ApplyRoutes changed, for undoing it exactly.
type routeRecord struct {
	NetNS   uint64       `json:"netns"`
	LinksUp []string     `json:"links_up,omitempty"` // links that were down and we set up
	Addrs   []addrEntry  `json:"addrs,omitempty"`
	Routes  []routeEntry `json:"routes,omitempty"`
	Rules   []ruleEntry  `json:"rules,omitempty"`
	// MarkTable and Sysctls: the mark restoring for the reverse path
	// filter (routes_mark_linux.go), and the sysctls' values before.
	MarkTable string         `json:"mark_table,omitempty"`
	Sysctls   []sysctlRecord `json:"sysctls,omitempty"`
}

// ruleEntry is one policy routing rule we added (tagged, like our routes,
// with our protocol number).
type ruleEntry struct {
	IPv6     bool   `json:"ipv6,omitempty"`
	Priority int    `json:"priority"`
	Table    uint32 `json:"table"`
	// NotMark: "not fwmark NotMark lookup Table".
	NotMark uint32 `json:"not_mark,omitempty"`
	// SuppressDefault: "lookup Table suppress_prefixlength 0".
	SuppressDefault bool `json:"suppress_default,omitempty"`
}

// addrEntry is one address we put on a link.
type addrEntry struct {
	Prefix netip.Prefix `json:"prefix"`
	Dev    string       `json:"dev"`
}

// routeEntry is one route we added. Routes are tagged with our own routing
// protocol number, so undoing never deletes a route someone else added.
type routeEntry struct {
	Table   uint32       `json:"table,omitempty"` // 0: main
	Dst     netip.Prefix `json:"dst"`
	Gateway netip.Addr   `json:"gateway,omitzero"`
	Dev     string       `json:"dev,omitempty"`
	// Unreachable routes have no device: they make a family fail at once
	// instead of leaking past a TUN that cannot carry it.
	Unreachable bool `json:"unreachable,omitempty"`
}

// merge adds the entries of other that rec lacks: a run that finds the
// leftovers of a crashed run takes them over, so one undo removes both.
func (rec *routeRecord) merge(other *routeRecord) {
	if other == nil {
		return
	}
	rec.LinksUp = appendNew(rec.LinksUp, other.LinksUp...)
	rec.Addrs = appendNew(rec.Addrs, other.Addrs...)
	rec.Routes = appendNew(rec.Routes, other.Routes...)
	rec.Rules = appendNew(rec.Rules, other.Rules...)
	if other.MarkTable != "" {
		rec.MarkTable = other.MarkTable
	}
	// A crashed run's record holds the real original values.
	for _, s := range other.Sysctls {
		rec.Sysctls = slices.DeleteFunc(rec.Sysctls, func(o sysctlRecord) bool { return o.Key == s.Key })
		rec.Sysctls = append(rec.Sysctls, s)
	}
}

// appendNew appends the items of add that list does not hold yet.
func appendNew[T comparable](list []T, add ...T) []T {
	for _, a := range add {
		if !slices.Contains(list, a) {
			list = append(list, a)
		}
	}
	return list
}
