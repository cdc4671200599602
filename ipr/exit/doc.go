// Package exit runs the IP packet router of an exit gateway beside its node:
// an embedded mixnet client (with its own identity, router.key in the node's
// data directory) connected to this node's own gateway, a router.Router, the
// exit TUN (nymtun0, 10.0.0.1/16 and fc00::1/112) and the host's forwarding,
// NAT and exit policy through package platform.
//
// Requests arrive as mixnet messages carrying reply SURBs under an anonymous
// sender tag; the tag is the router's session key. Everything the router sends
// back rides those SURBs, one per reply packet: control responses at once,
// and each session's downstream Data through a reply stream of the mixnet
// client, which pulls the next bundle from the session's queue whenever it
// holds a SURB for the session.
//
// The TUN and the host networking are injectable (Config.Device,
// Config.Host): with the host's own, the service needs CAP_NET_ADMIN (TUN,
// addresses, nftables, sysctls); tests run the same service over a
// userspace TUN with NoHost.
package exit
