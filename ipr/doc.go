// Package ipr is the transport-independent core of the exit's IP packet
// router: the protocol a VPN client speaks to it, the codec that packs IP
// packets into mixnet payloads, the pool of client addresses, and the Router
// that keeps one session per anonymous client, writes the client's packets to
// the exit's TUN device and queues the internet's answers for it.
//
// The Router does no I/O of its own. The exit's mixnet glue calls
// HandleRequest with each request payload and the sender tag it came with,
// answers control requests through Config.Reply, and pulls downstream data
// with NextBundle whenever its Poisson/SURB loop has a slot; the exit's TUN
// reader calls FromTUN. So the timing of everything the exit sends is decided
// by the mixnet transport, never by a flush timer here.
//
// # Wire protocol (version 1)
//
// Every message starts with the protocol version, then a type byte; response
// types have the high bit set so a request can never be read as a response.
// Integers are big-endian. A message must be exactly as long as its type
// says; unknown flag bits are refused.
//
//	requests (client → router)
//	  0x01 Connect     request id u64 ‖ session nonce [16] ‖ flags u8 ‖ [IPv4 4] ‖ [IPv6 16]
//	  0x02 Disconnect  (nothing)
//	  0x03 Ping        id u64
//	  0x04 Data        seq u64 ‖ bundle
//	responses (router → client)
//	  0x81 ConnectOK              request id u64 ‖ IPv4 4 ‖ IPv6 16 ‖ MTU u16
//	  0x82 ConnectFail            request id u64 ‖ reason u8
//	  0x83 Pong                   id u64
//	  0x84 Data                   seq u64 ‖ backlog u16 ‖ bundle
//	  0x85 Info                   code u8 ‖ proto u8 ‖ family u8 (0, 4, 6) ‖ [addr ‖ port u16] ‖ UTF-8 text
//	  0x86 UnrequestedDisconnect  reason u8
//
// A bundle is IP packets, each prefixed by its length (u16); a zero length
// ends the bundle (what follows is padding).
//
// Sessions. The session nonce is a random secret the client keeps for as long
// as it wants its addresses: a Connect from a new sender tag with the nonce of
// a live session moves that session (addresses, queues, sequence numbers) to
// the new tag, so a client whose mixnet client restarted keeps its tunnel.
// Sequence numbers count Data messages per direction from 0 at the session's
// creation and continue across such a move. Backlog in a downstream Data
// message is how many more bundles the router could send at once: the client
// sizes its SURB supply by it.
package ipr
