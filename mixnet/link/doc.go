// Package link is the transport between mixnet nodes and between a client and
// its gateway: TCP carrying a Noise_XK_25519_AESGCM_SHA256 session.
//
// The responder's static X25519 key is known in advance (it comes from the
// signed topology), so a man in the middle cannot complete the handshake. The
// initiator's static key travels encrypted in the third handshake message; the
// responder learns it there and asks its Authorize callback whether to keep the
// connection. For a client that key is its identity, so the handshake is
// registration and authentication in one.
//
// When the responder publishes an ML-KEM-768 key (KeyPair.KEMKeys, which
// rotate, or KeyPair.KEM) and the initiator knows it (Config.PeerKEM), the
// handshake is hybrid,
// Noise_XKpsk2_25519_AESGCM_SHA256: message 1 carries the KEM ciphertext and
// the encapsulated secret is the PSK, so the session keys need both X25519 and
// ML-KEM broken. How kinds are told apart, mixed networks during an upgrade
// and why a downgrade is impossible: see pq.go.
//
// Wire format. Every message, handshake or transport, is a 2-byte big-endian
// length followed by that many bytes of Noise message (at most 65535, which
// includes the 16-byte AEAD tag of transport messages). The plaintext of a
// transport message is one or more frames back to back:
//
//	version u8 | kind u8 | flags u8 | length u16 BE | payload (length bytes)
//
// Version is 1. Flags bit 0 is the Sphinx key-rotation parity; the other bits
// are reserved and must be zero. A frame that breaks any of these rules, or a
// message that fails to decrypt, closes the connection and is counted in Stats.
//
// Each Conn has exactly one reader and one writer goroutine. The writer packs
// as many queued frames as fit into each Noise message and writes several
// messages with one system call when the queue holds them, so batching costs no
// added latency: a lone frame is written as soon as it is queued. Queues are
// bounded; Send never blocks and drops (and counts) a frame when its queue is
// full.
package link
