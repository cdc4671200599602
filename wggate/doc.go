// Package wggate is the gateways' side of fast mode: WireGuard (wireguard-go's
// device, in userspace) on the port a gateway announces as wg_addr, and the
// registration server on the same port over TCP (the contract is package
// wgreg).
//
// An entry's device has no kernel interface: its tun side is a channel, and
// what a client's peer sends in the outer tunnel is relayed only if it is
// UDP to a current exit's WireGuard endpoint, from a UDP socket of the
// entry's own per client flow; replies go back into the tunnel as IP/UDP
// from that endpoint. Everything else is dropped and counted. The entry
// never sees inner destinations: they are inside the inner tunnel, to the
// exit.
//
// An exit's device sits on a kernel TUN of its own (nymwg0), which the node
// hands to the same exit networking as the IP packet router (forwarding,
// masquerade, MSS clamp, exit policy, no client-to-client): one policy, two
// doors. An exit takes registrations only relayed by a gateway of the
// consensus, so it never learns a client's address.
//
// Peers that have had no handshake for the peer timeout are removed and
// their addresses handed out again.
package wggate
