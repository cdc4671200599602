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
//     (or link end) where the event was seen, its role (public in the
//     directory), direction, the other end of the link, and the size on the
//     wire. No keys, no content.
//   - [Truth]: what only the experimenter knows (a packet id that links a
//     node's in and out, the true sender, whether the packet is cover). The
//     evaluation uses it to score an attack; the attacks never see it: the
//     analysis functions take []Event, not []Record.
//
// Client links are recorded at the gateway end: an event at a gateway whose
// peer is not a mix or gateway is on that client's link (In = upstream, Out =
// downstream). The exit's internet side is recorded at the exit (RoleExit)
// with Peer naming the flow as the observer sees it (its remote endpoint):
// Out = towards the internet (upstream), In = from it (downstream).
//
// # File format
//
// A trace file is a header followed by fixed-size records, all big-endian:
//
//	header:  magic "NYMTRACE" (8 bytes) | version u16 (1) | record length u16 (35)
//	record:  time i64 (Unix ns) | node u32 | peer u32 | size u32 | role u8 | dir u8   (observer, 22 bytes)
//	         packet u64 | sender u32 | flags u8 (bit 0: cover)                         (ground truth, 13 bytes)
//
// The header's record length lets a reader refuse a file it cannot parse
// rather than misread it. Writers must append records in causal order (a
// packet's Out at one node before its In at the next); analyses sort by
// time stably, so equal times keep file order.
//
// Nothing records traces from nodes yet: the node option that writes them
// (off by default, never in production configs) and the nym-anonymity runner
// that drives a network of clients and reports the table come next.
package anonymity
