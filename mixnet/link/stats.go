package link

import "sync/atomic"

// Stats counts what the link layer did and, above all, what it dropped and
// why. All fields are updated atomically and may be read at any time; one
// Stats may be shared by several Servers, Pools and Conns.
type Stats struct {
	ConnsOpened   atomic.Uint64 // handshakes completed and authorized
	ConnsClosed   atomic.Uint64 // established connections that ended
	ConnsRejected atomic.Uint64 // accepted TCP connections refused: too many already
	// ConnsRejectedPerIP counts connections refused because their source
	// already had MaxHandshakesPerIP handshakes or MaxConnsPerIP links.
	ConnsRejectedPerIP atomic.Uint64
	IdleClosed         atomic.Uint64 // links closed after IdleTimeout without a message
	DialFailures       atomic.Uint64 // outbound TCP connects that failed
	HandshakeFails     atomic.Uint64 // handshakes that failed (bad key, garbage, timeout)
	Unauthorized       atomic.Uint64 // peers that completed a handshake but Authorize refused

	FramesSent       atomic.Uint64
	FramesReceived   atomic.Uint64 // frames handed to the Handler
	MessagesSent     atomic.Uint64 // Noise transport messages written
	MessagesReceived atomic.Uint64 // Noise transport messages decrypted
	BytesSent        atomic.Uint64 // bytes written to the socket after the handshake
	BytesReceived    atomic.Uint64 // bytes read from the socket after the handshake

	DroppedQueueFull  atomic.Uint64 // Send found the queue full
	DroppedInvalid    atomic.Uint64 // Send got a frame that cannot be encoded
	DroppedClosed     atomic.Uint64 // Send after Close, or frames still queued at Close
	DroppedWriteError atomic.Uint64 // frames in a batch whose write failed

	BadMessages    atomic.Uint64 // messages that failed to decrypt or had an impossible length
	BadFrames      atomic.Uint64 // messages with a malformed frame (version, kind, flags, length)
	HandlerErrors  atomic.Uint64 // connections closed because the Handler returned an error
	ControlIgnored atomic.Uint64 // KindControl frames received and discarded

	HandshakesClassical atomic.Uint64 // handshakes completed with X25519 only
	HandshakesHybrid    atomic.Uint64 // handshakes completed with X25519 and ML-KEM
	RefusedClassical    atomic.Uint64 // classical initiators refused: RequirePQ
}

// Each calls fn with the name and current value of every counter, in a fixed
// order, so a node can export them (for example to Prometheus) without this
// package depending on an exporter.
func (s *Stats) Each(fn func(name string, value uint64)) {
	for _, c := range []struct {
		name string
		v    *atomic.Uint64
	}{
		{"conns_opened", &s.ConnsOpened},
		{"conns_closed", &s.ConnsClosed},
		{"conns_rejected", &s.ConnsRejected},
		{"conns_rejected_per_ip", &s.ConnsRejectedPerIP},
		{"idle_closed", &s.IdleClosed},
		{"dial_failures", &s.DialFailures},
		{"handshake_failures", &s.HandshakeFails},
		{"unauthorized", &s.Unauthorized},
		{"frames_sent", &s.FramesSent},
		{"frames_received", &s.FramesReceived},
		{"messages_sent", &s.MessagesSent},
		{"messages_received", &s.MessagesReceived},
		{"bytes_sent", &s.BytesSent},
		{"bytes_received", &s.BytesReceived},
		{"dropped_queue_full", &s.DroppedQueueFull},
		{"dropped_invalid", &s.DroppedInvalid},
		{"dropped_closed", &s.DroppedClosed},
		{"dropped_write_error", &s.DroppedWriteError},
		{"bad_messages", &s.BadMessages},
		{"bad_frames", &s.BadFrames},
		{"handler_errors", &s.HandlerErrors},
		{"control_ignored", &s.ControlIgnored},
		{"handshakes_classical", &s.HandshakesClassical},
		{"handshakes_hybrid", &s.HandshakesHybrid},
		{"refused_classical", &s.RefusedClassical},
	} {
		fn(c.name, c.v.Load())
	}
}
