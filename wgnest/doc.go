// Package wgnest is the client's side of fast mode: WireGuard nested in
// WireGuard, client → entry gateway → exit gateway.
//
// Two golang.zx2c4.com/wireguard devices run in userspace:
//
//   - The inner device talks to the exit. Its tun is the user's kernel TUN
//     (nymvpn0, MTU 1340 by default), and its conn.Bind sends no packet on
//     any socket: each WireGuard datagram for the exit is wrapped as an
//     IPv4 or IPv6 UDP packet (Datagram: source the client's address in
//     the outer tunnel, destination the exit's WireGuard endpoint) and
//     handed to the outer device as if its tun had read it.
//   - The outer device talks to the entry. Its tun is that in-process pipe
//     (MTU 1420), and its bind is wireguard's standard UDP bind, whose
//     sockets carry the VPN's firewall mark so that policy routing sends
//     them past the tunnel and the kill switch lets them out to the entry.
//     Packets it decrypts are UDP from the exit's endpoint; their payloads
//     go back to the inner bind.
//
// So the entry sees the client's address and opaque UDP to an exit; the
// exit sees the entry's address and the client's traffic. Nothing reaches
// the outer device but what the inner device encrypted: the inner device
// is made first, and the pipe is the outer device's only input.
//
// Sizes: the inner MTU plus WireGuard's 32 bytes and an IPv6 and UDP
// header (48) must fit the outer MTU (1340 + 32 + 48 = 1420), and the outer
// packet plus the same again fits a 1500-byte path, so nothing fragments.
//
// The package starts no goroutine of its own: the two devices own theirs
// and Close stops them; Watch runs on its caller's goroutine.
package wgnest
