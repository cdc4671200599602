// Package client is a mixnet client: it connects to a gateway, sends messages
// through the mix layers with Loopix cover traffic, and receives messages,
// acknowledgements and anonymous replies.
//
// # Sending
//
// Every packet leaves through one Poisson stream of rate 1/SendInterval: at
// each tick the next queued packet goes out, or a loop cover packet (a packet
// to ourselves through a full route) when none is queued. A second,
// independent Poisson stream sends loop cover packets only. Both are scheduled
// from absolute deadlines, so work done at a tick does not slow the rate.
//
// A caller with a steady flow of packets opens a stream ([Client.OpenStream],
// [Client.OpenReplyStream]) and the client pulls from its [Source] when a
// slot is coming, writing the data straight into the buffer that goes to the
// gateway. Real slots go round robin to the streams with a packet built and
// to the client's own queue (reliable messages, acks' resends, SURB traffic,
// the few control packets pushed with SendRepliablePacket and Reply).
//
// A route is one mix per layer, chosen at random weighted by the node's
// performance, then the recipient's gateway as the fourth and last Sphinx hop.
// The packet is handed to our own gateway, which forwards it unchanged to the
// layer-1 mix. Each mix holds the packet for an exponentially distributed
// delay of mean HopDelay.
//
// # Payload layouts
//
// A forward packet's Sphinx message (at most 2048 bytes) is a
// gatewire.Envelope: a SURB-ack the recipient's gateway sends back to our
// gateway at once, then the body. The body is sealed for the recipient, since
// its gateway reads the envelope:
//
//	envelope  419  flags ‖ ack first hop ‖ 386-byte ack packet
//	eph        32  ephemeral X25519 public key
//	sealed      …  AES-256-GCM under HKDF(X25519(eph, recipient)), tag 16
//
// The sealed plaintext is a [Fragment] (12-byte header, then data), so a
// forward packet carries up to [FragmentCapacity] bytes of message. Reply
// packets, built from a SURB, carry a Fragment directly: the SURB's layered
// encryption already hides it from everyone but its creator.
//
// Reassembled, a message starts with a kind byte (see message.go): plain data,
// data with reply SURBs under an anonymous sender tag, more SURBs, a reply,
// or a request for more SURBs.
//
// # Reliability
//
// Each fragment's SURB-ack returns to our gateway with a Destination.ID that
// names the fragment. A fragment not acknowledged within
// (forward delays + ack delays) × Multiplier + Slack is sent again on a fresh
// route, up to MaxRetransmissions times. Replies through SURBs are not
// acknowledged: their creator is anonymous to the replier.
package client
