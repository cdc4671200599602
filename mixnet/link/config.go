package link

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"time"
)

// Defaults for zero Config fields.
const (
	DefaultQueueLen         = 2048
	DefaultHandshakeTimeout = 5 * time.Second
	DefaultConnectTimeout   = 1500 * time.Millisecond
	DefaultWriteTimeout     = 10 * time.Second
)

// Handler receives each frame read from c, on c's reader goroutine, in the
// order the peer sent them. f.Payload is a fresh slice the handler owns and may
// keep. A handler that blocks stalls only this connection (TCP then pushes back
// on the peer). Returning an error closes the connection.
//
// A Handler must not call c.Close: Close waits for the reader goroutine, which
// is the one running the handler. Return an error instead.
type Handler func(c *Conn, f Frame) error

// Config holds the settings shared by Dial, Server and Pool.
type Config struct {
	// Static is our static key: a node's Noise key or a client's identity.
	Static KeyPair
	// Handler receives inbound frames. Nil discards them (they are still
	// counted in FramesReceived).
	Handler Handler
	// OnClose, if set, is called once when a connection has ended, with the
	// reason, as its last goroutine stops. It must not block or call Close.
	OnClose func(c *Conn, err error)

	// QueueLen bounds the frames waiting to be written per connection (per
	// peer for a Pool). Default DefaultQueueLen.
	QueueLen int
	// HandshakeTimeout bounds the whole Noise handshake. Default 5 s.
	HandshakeTimeout time.Duration
	// ConnectTimeout bounds an outbound TCP connect. Default 1.5 s.
	ConnectTimeout time.Duration
	// WriteTimeout bounds each socket write, so a peer that stops reading is
	// eventually disconnected rather than holding its queue full forever.
	// Default 10 s.
	WriteTimeout time.Duration
	// IdleTimeout, if positive, closes a connection on which nothing has
	// been received for that long (never sooner, at most a quarter later),
	// counted in Stats.IdleClosed. A gateway sets it for client links: a
	// client sending Loopix cover traffic is never idle. 0 never closes.
	IdleTimeout time.Duration
	// DialContext makes outbound TCP connections; nil uses a net.Dialer. Tests
	// and network-namespace callers replace it.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)

	// Logger receives connection events; nil uses slog.Default().
	Logger *slog.Logger
	// Stats receives the counters; nil allocates a fresh Stats.
	Stats *Stats

	// PeerKEM returns the ML-KEM key a peer published, by its static key,
	// or nil if it has none. An initiator runs the hybrid handshake with
	// every peer it returns a key for. Nil means classical handshakes only.
	PeerKEM func(remoteStatic [32]byte) *KEMPublicKey
}

// withDefaults returns a copy of c with zero fields filled in.
func (c Config) withDefaults() (Config, error) {
	if c.Static.isZero() {
		return c, errors.New("link: config has no static key")
	}
	if c.QueueLen <= 0 {
		c.QueueLen = DefaultQueueLen
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.DialContext == nil {
		var d net.Dialer
		c.DialContext = d.DialContext
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Stats == nil {
		c.Stats = new(Stats)
	}
	return c, nil
}
