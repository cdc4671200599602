// Package vpn is nymvpn's tunnel engine: it carries the IP packets of a TUN
// device (a kernel interface or a userspace gVisor stack) to an exit's IP
// packet router through the mixnet, and the router's answers back.
//
// A Tunnel is one ipr session. Connect dials the mixnet, sends ipr.Connect
// with reply SURBs and waits for ConnectOK, which gives the addresses and the
// MTU the caller configures its TUN with. Run then pumps packets both ways:
//
//   - upstream, packets read from the TUN wait, in the buffers they were
//     read into, in one queue bounded by sojourn time (package codel), and
//     the mixnet client pulls them (a client.Stream) exactly when it has a
//     Poisson slot for one: the client's clock is the only pace and the
//     queue the only place a packet waits, so TCP inside the tunnel sees
//     loss as soon as the Poisson stream — the tunnel's bottleneck — falls
//     behind, instead of a deep buffer. Each pull packs a DataUp bundle in
//     place into the client's packet buffer, as far as one packet allows,
//     its spare room filled with reply SURBs; every packet carries the
//     sender tag that names the session at the exit, but a full one no
//     SURB, so the MTU is a whole tagged packet less the ipr framing —
//     1537, enough for IPv6;
//   - downstream, DataDown replies are put back in sequence order by an
//     ipr.Resequencer whose timeout follows the mixing profile, split, and
//     written to the TUN;
//   - the exit can send one reply per SURB, so the tunnel keeps a supply
//     sized by the backlog the exit reports, and tops it up when low, in
//     bundles packed to leave room for SURBs or in SURB-only packets;
//   - pings keep an idle session from expiring at the exit (60 s) and prove
//     the path alive; when no reply comes for DeadAfter, or the mixnet
//     client has lost its gateway for GatewayTimeout, the tunnel dials a
//     fresh mixnet client (another gateway, if the dialer picks one) and
//     moves its session there with its nonce, keeping addresses and
//     sequence numbers.
package vpn
