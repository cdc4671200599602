// Package anonymity measures what a global passive observer learns from a
// mixnet's traffic: sender entropy (Loopix's measure), a flow-correlation
// attacker, and two-sample tests for cover indistinguishability. It is pure
// computation on traces; it opens no sockets and needs no privileges.
//
// # Traces
//
// A trace is a sequence of [Record]s, one per packet event seen at a node or
// at a link end. Each record holds two parts kept apart on purpose:
//
//   - [Event]: what an observer who watches every link sees: time, the node
//     (or link end) where the event was seen, direction, the other end of
//     the link, both ends' roles (public in the directory; a client is what
//     the directory does not list), and the size on the wire. No keys, no
//     content.
//   - [Truth]: what only the experimenter knows (a packet id that links a
//     node's in and out, the true sender, whether the packet is cover). The
//     evaluation uses it to score an attack; the attacks never see it: the
//     analysis functions take []Event, not []Record.
//
// Client links are recorded at the gateway end: an event at a gateway whose
// peer is a RoleClient is on that client's link (In = upstream, Out =
// downstream); an exit's own mixnet client reaches its gateway the same way,
// with the peer's role RoleExit. The exit's internet side is recorded at the exit (RoleExit)
// with Peer naming the flow as the observer sees it (its remote endpoint,
// RoleHost): Out = towards the internet (upstream), In = from it
// (downstream). A node's role is the one of its epoch: split traces where a
// node changes role.
//
// # File format
//
// A trace file is a header followed by fixed-size records, all big-endian:
//
//	header:  magic "NYMTRACE" (8 bytes) | version u16 (1) | record length u16 (36)
//	record:  time i64 (Unix ns) | node u32 | peer u32 | size u32 |
//	         role u8 | peer role u8 | dir u8               (observer, 23 bytes)
//	         packet u64 | sender u32 | flags u8 (bit 0: cover)   (ground truth, 13 bytes)
//
// Roles: 1 client, 2 gateway, 3 mix, 4 exit, 5 internet host. Directions:
// 1 in, 2 out.
//
// The header's record length lets a reader refuse a file it cannot parse
// rather than misread it. Writers must append records in causal order (a
// packet's Out at one node before its In at the next); analyses sort by
// time stably, so equal times keep file order.
//
// # Recording
//
// Every recorder names parties alike, so that files merge: a node, client
// or exit by [IDOf] of its identity key (a client's is its address key;
// the exit by its IP router's client identity), an internet endpoint by
// [EndpointID]. A [Recorder] appends to one file; a nil Recorder records
// nothing, so tracing off costs a nil check. What records what:
//
//   - nym-node, with trace_file set in its config.toml (off by default;
//     never in production): its mixer records each packet In from the
//     previous hop and Out to the next, both under one Truth.Packet (a
//     node-local counter), Size being the link frame's wire length; as a
//     gateway it records the same on its mix side (In from the last
//     layer, Out to the first) and every frame on a client's link at its
//     end, In (upstream, Truth.Sender the client) and Out (downstream),
//     the peer's role RoleExit for the node's own exit's router client.
//   - The exit beside the node (same file): its internet side, each IP
//     packet Out to or In from the internet, Peer the remote endpoint.
//     Truth.Sender is 0: the exit does not know the client; the
//     experimenter, who gave each client its own server port, does.
//   - A mixnet client with Config.Trace: every frame on its link at its
//     end, Role RoleClient, with the ground truth only it knows: whether
//     a frame is cover (loop cover or a cover slot of the Poisson stream;
//     downstream, its own loop cover and its acks coming back).
//   - Fast mode (package wggate, the same trace_file; the client's
//     wgnest.Config.Trace): every datagram on a WireGuard port and on an
//     entry's relay sockets (package wgtrace), Size the UDP payload, and
//     the exit gateway's TUN as the exit's internet side ([HostRecord], as
//     the IP packet router's). A fast-mode client is named by
//     [EndpointID] of its address and port as the entry sees them (all
//     an observer knows of it), a gateway by IDOf its identity. Fast mode
//     has no mix layer: [RelayEntropy] takes the entry as the last one.
//
// Both ends of a client's link name a frame by [PacketIDOf] its payload,
// so [JoinCover] can copy the client's cover truth onto the gateway's
// records, which [CompareCover] needs. Senders stamp a record before
// handing the frame to the link, so a receiver's record is never earlier.
// [Check] verifies a merged trace's causality (links FIFO, every arrival
// sent first, every departure from a mix received first); the runner that
// drives a network of clients and reports the table is in its own package.
package anonymity
