package link

import (
	"context"
	"fmt"
	"net"
)

// Dial connects to the link server at addr, which must prove it holds the
// private half of remoteStatic, and returns the running connection. ctx
// bounds the connect and handshake and also the connection's life:
// cancelling it closes the Conn.
//
// A server that refuses our key (Authorize) does so after the handshake, so
// Dial succeeds and the Conn then ends with the peer closing it.
func Dial(ctx context.Context, addr string, remoteStatic [32]byte, cfg Config) (*Conn, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	nc, sess, err := connect(ctx, addr, remoteStatic, &cfg)
	if err != nil {
		return nil, err
	}
	c := newConn(ctx, nc, sess, &cfg, make(chan Frame, cfg.QueueLen), true, nil)
	c.start()
	return c, nil
}

// connect dials addr and runs the initiator handshake, counting failures.
func connect(ctx context.Context, addr string, remoteStatic [32]byte, cfg *Config) (net.Conn, session, error) {
	kem, err := initiatorKEM(cfg, remoteStatic)
	if err != nil {
		cfg.Stats.HandshakeFails.Add(1)
		return nil, session{}, fmt.Errorf("link handshake with %s: %w", addr, err)
	}
	dialCtx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	nc, err := cfg.DialContext(dialCtx, "tcp", addr)
	cancel()
	if err != nil {
		cfg.Stats.DialFailures.Add(1)
		return nil, session{}, fmt.Errorf("link dial %s: %w", addr, err)
	}
	sess, err := initiatorHandshake(ctx, nc, cfg.Static, remoteStatic, kem, cfg.HandshakeTimeout)
	if err != nil {
		nc.Close()
		cfg.Stats.HandshakeFails.Add(1)
		return nil, session{}, fmt.Errorf("link handshake with %s: %w", addr, err)
	}
	return nc, sess, nil
}
