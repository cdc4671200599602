// Package ipr is the protocol a VPN client speaks to the exit's IP packet
// router: its messages, the bundle codec that packs IP packets into mixnet
// payloads, the resequencer that puts Data messages back in order, and the
// addresses both ends know. The router itself is ipr/router; the VPN client
// links only this package.
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
