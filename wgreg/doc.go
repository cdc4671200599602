// Package wgreg is the registration contract of fast mode: how a client gets
// a WireGuard peer at an entry gateway, directly, and at an exit gateway,
// relayed by that entry so the exit never sees the client's address. It
// holds the messages, their sealing and the client's calls; the gateways'
// side lives in package wggate. A client links this package, never the
// server.
//
// # Transport
//
// A gateway announces WGAddr (IP:port) in its descriptor. UDP on it is
// WireGuard; TCP on the same port is a registration link: mixnet/link's
// Noise XK, hybrid with ML-KEM-768 when the gateway publishes KEM keys,
// to the gateway's NoiseKey from the consensus. A client dials it with a
// fresh static key per registration, so a registration links to no mixnet
// identity. Messages travel in link frames of kind KindClient; every one
// starts with a type byte and a request ID that the answer repeats:
//
//	Register 1  client → gateway  id u32 ‖ sealed request (for this gateway)
//	Relay    2  client → entry    id u32 ‖ exit identity [32] ‖ sealed request (for the exit)
//	Forward  3  entry → exit      id u32 ‖ sealed request (what Relay carried, unchanged)
//	Reply    4  gateway → client  id u32 ‖ sealed reply
//	Error    5  gateway → client  id u32 ‖ code u8 ‖ UTF-8 text (≤ MaxErrorText)
//
// An exit accepts Forward only on links whose static key is the NoiseKey of
// a gateway in its consensus, and never Register: a client reaches an exit
// only through an entry.
//
// # Sealing
//
// A sealed request is rotation u64 ‖ enc ‖ HPKE ciphertext (RFC 9180, base
// mode, KEM MLKEM768-X25519, HKDF-SHA256, AES-256-GCM). The recipient's
// public key is the gateway's ML-KEM-768 key of that rotation (kem_keys in
// its descriptor) with its Noise X25519 key: no key is published for this
// alone, and a recording stays closed unless both ML-KEM and X25519 fall.
// The HPKE info names the protocol, the role (entry or exit) and the
// gateway's identity, so a request sealed for one gateway or role opens at
// no other. The plaintext Request carries the client's WireGuard public key,
// a fresh nonce, the time, and optional ticket Spend bytes. The relaying
// entry sees only ciphertext, both ways.
//
// The reply is AES-256-GCM under a key exported from the same HPKE context
// (so only the holder of the gateway's private keys can answer), and the
// WireGuard pre-shared key is another export: both sides derive it from the
// ML-KEM and X25519 secrets and the whole HPKE transcript (enc, info), and it
// never crosses the wire.
//
// # Replays
//
// A gateway refuses a request whose time is more than its clock skew
// allowance (2 minutes by default) away from its clock, and remembers every
// nonce it accepted for twice that long, so a recorded request is refused
// when sent again (it would also only yield a reply nobody but the original
// client can read).
//
// # Allowance
//
// A gateway that meters its peers (a ticket buys so many bytes through one)
// says in each OK answer how many bytes the peer may still move there
// (Answer.Allowance; 0: unmetered). Before they run out, the client sends a
// new request for the same WireGuard key with a new ticket: the gateway keeps
// the peer and its addresses, adds the ticket's bytes, takes the new
// pre-shared key the request's sealing derives, and answers what is left. A
// replayed top-up is refused like any replayed request, so it adds nothing.
package wgreg
