package wgreg

import "github.com/nym-go/nym/mixnet/directory"

// Which gateways serve fast mode, and as what. A gateway's WireGuard door
// is an entry's on an entry-gateway node and an exit's on an exit-capable
// one (exit gateways and auto nodes run the IP router, whose exit
// networking the exit's door needs), whatever role the epoch gives it.

// Entries returns the topology's entries whose WireGuard door is an
// entry's: those that announce wg_addr and offer no exit role.
func Entries(t *directory.Topology) []directory.Node {
	var out []directory.Node
	for _, n := range t.Entry {
		if _, ok := n.WGAddrPort(); ok && !n.Capabilities.Exit {
			out = append(out, n)
		}
	}
	return out
}

// Exits returns the topology's exits that announce wg_addr.
func Exits(t *directory.Topology) []directory.Node {
	var out []directory.Node
	for _, n := range t.Exit {
		if _, ok := n.WGAddrPort(); ok {
			out = append(out, n)
		}
	}
	return out
}
