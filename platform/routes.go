package platform

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// RouteConfig says how to send the host's traffic through the VPN's TUN.
type RouteConfig struct {
	// StatePath is the state file that records each change before it is
	// made, for Restore after a crash.
	StatePath string
	// TUN is the name of the VPN's TUN interface (e.g. "nymvpn0").
	TUN string
	// Addresses are put on the TUN: the addresses the exit allocated.
	Addresses []netip.Prefix
	// Exceptions keep the route they have now (through the original
	// default route): the entry gateway and the directory. Sending them
	// into the tunnel would loop.
	Exceptions []netip.Addr
}

func (c RouteConfig) validate() error {
	if c.StatePath == "" {
		return errors.New("no state file path")
	}
	if c.TUN == "" || len(c.TUN) > 15 {
		return fmt.Errorf("bad TUN name %q", c.TUN)
	}
	for _, p := range c.Addresses {
		if !p.IsValid() {
			return errors.New("invalid TUN address")
		}
	}
	for _, a := range c.Exceptions {
		if !a.IsValid() {
			return errors.New("invalid exception address")
		}
	}
	return nil
}

// splitDefaults cover all of IPv4 and IPv6 with two halves each. Being more
// specific than 0.0.0.0/0 and ::/0 they win over the original default routes,
// which stay untouched, so undoing is deleting just these four.
var splitDefaults = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/1"),
	netip.MustParsePrefix("128.0.0.0/1"),
	netip.MustParsePrefix("::/1"),
	netip.MustParsePrefix("8000::/1"),
}

// routeRecord is what ApplyRoutes changed, for undoing it exactly.
type routeRecord struct {
	NetNS   uint64       `json:"netns"`
	LinksUp []string     `json:"links_up,omitempty"` // links that were down and we set up
	Addrs   []addrEntry  `json:"addrs,omitempty"`
	Routes  []routeEntry `json:"routes,omitempty"`
}

// addrEntry is one address we put on a link.
type addrEntry struct {
	Prefix netip.Prefix `json:"prefix"`
	Dev    string       `json:"dev"`
}

// routeEntry is one route we added. Routes are tagged with our own routing
// protocol number, so undoing never deletes a route someone else added.
type routeEntry struct {
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
