// Package authority is the directory authority (nym-api): it takes the
// nodes' signed descriptors over HTTP, probes their liveness, assigns roles
// every epoch, and signs and serves the topology. Its state (epoch clock,
// descriptors, probe history, assignment) lives in a bbolt database beside
// its signing key in the data dir.
//
// Admission (admission.go, approve.go, monitor.go) is what stands between a
// registration and a seat, since registering costs nothing:
//
//   - Proof: each probe first completes a Noise handshake (hybrid when the
//     node announces a KEM key) with the announced Noise key at the announced
//     mixnet address; only then does the authority speak HTTP, and only to
//     the IP that handshake reached. A registration whose first handshake
//     fails is dropped, so the authority cannot be aimed at third parties.
//   - Uniqueness: no two nodes share a Noise, Sphinx or KEM key or a mixnet,
//     HTTP or clients address; the first registered keeps it and a clone is
//     refused (409) naming the conflict. HTTP and clients addresses must be
//     on the mixnet address's host.
//   - Limits: at most 2 nodes per IP address and 4 per IPv4 /24 (IPv6 /48)
//     take part in an epoch (Admission; the local network lifts them); new
//     identities are rate-limited per source; registrations awaiting their
//     handshake are bounded apart from admitted nodes.
//   - Approval: admission = approval seats only nodes the operator approved
//     with `nym-api nodes approve`; a public network without stake runs it.
//     Open (the default) is for local networks and tests.
//   - Measurement: the monitor connects to each gateway as a mixnet client
//     and sends Sphinx loops L1 → L2 → L3 → gateway back to itself through
//     every seated node; a node whose loops do not come back (attributed
//     past nodes that dropped most of theirs) loses its seat at the next
//     boundary whatever its health endpoint says.
//
// Bandwidth tickets (ticketkeys.go, vouchers.go, tickets.go, ticketstore.go;
// the contract is package mixnet/ticket): the authority keeps an RSA issuer
// key per ticket type and expiry day in TicketKeysDir, made a day ahead and
// published in its vote; it signs blind the requests of the vouchers in its
// VouchersFile, once per voucher (an identical retry is answered again),
// recording only hashes of the voucher and the request; and it takes the
// gateways' signed reports of spent serials, from gateways of the current
// consensus only, serving them back with a cursor and flagging a serial two
// gateways reported. The consensus carries the keys, so the authorities of
// one network upgrade to a version with tickets together (an older one
// computes a document without them and signs other bytes); one with
// tickets disabled still computes the same document as the others.
//
// The documents it serves, and the client that fetches them, are package
// mixnet/directory: see there for epochs, rotations and what a node does.
package authority
