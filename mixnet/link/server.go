package link

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// DefaultMaxConns bounds a Server's concurrent connections, handshakes
// included, when ServerConfig.MaxConns is zero.
const DefaultMaxConns = 1024

// DefaultMaxHandshakesPerIP bounds the handshakes in progress from one
// source when ServerConfig.MaxHandshakesPerIP is zero. An honest peer runs
// one handshake at a time (a pool reconnects one link per peer; a client
// holds one connection), so 8 leaves room for a few hosts behind one NAT
// while a single attacker holding silent connections gets nowhere near
// MaxConns.
const DefaultMaxHandshakesPerIP = 8

// DefaultFirstMessageTimeout is how long an accepted connection may stay
// silent before it sends the first handshake message, when
// ServerConfig.FirstMessageTimeout is zero. An honest initiator sends it
// the moment TCP connects, so 2 s covers a slow, lossy path (a SYN-ACK
// retransmit plus a round trip) while a silent connection frees its slot
// long before the whole HandshakeTimeout.
const DefaultFirstMessageTimeout = 2 * time.Second

// ServerConfig configures the accepting side of links.
type ServerConfig struct {
	Config
	// Authorize decides, after the handshake, whether the initiator whose
	// static key is remoteStatic may stay connected. Nil accepts every peer.
	// A refused peer is closed and counted in Stats.Unauthorized.
	Authorize func(remoteStatic [32]byte) error
	// OnConn, if set, receives each established connection before its first
	// frame is read, so a gateway can register it and write back on it. It
	// runs on the connection's handshake goroutine and must not block or
	// call Close.
	OnConn func(c *Conn)
	// MaxConns bounds connections per Serve call, handshakes included.
	// Connections beyond it are closed at once and counted. Default
	// DefaultMaxConns.
	MaxConns int
	// MaxHandshakesPerIP bounds the handshakes in progress from one source
	// (an IPv4 address or an IPv6 /64); one more is closed at once and
	// counted in Stats.ConnsRejectedPerIP. It keeps one host from taking
	// every MaxConns slot with connections that never authenticate.
	// Default DefaultMaxHandshakesPerIP; negative is unbounded.
	MaxHandshakesPerIP int
	// MaxHandshakesFrom, if set, gives a source's handshake bound in place
	// of MaxHandshakesPerIP when it returns more than 0: a gateway raises
	// it for the addresses of its fellow gateways, whose links each carry
	// one relayed request of many clients.
	MaxHandshakesFrom func(src netip.Prefix) int
	// MaxConnsPerIP bounds the established links from one source; a link
	// past it is closed right after its handshake and counted in
	// Stats.ConnsRejectedPerIP. 0 is unbounded.
	MaxConnsPerIP int
	// FirstMessageTimeout bounds how long a connection may stay silent
	// before the first handshake message; HandshakeTimeout still bounds
	// the whole handshake. Default DefaultFirstMessageTimeout.
	FirstMessageTimeout time.Duration
}

// Server accepts links: it runs the responder handshake for each TCP
// connection on its own goroutine, so a slow or silent peer never holds up
// the others.
type Server struct {
	cfg ServerConfig
}

// NewServer checks cfg and returns a Server ready to Serve.
func NewServer(cfg ServerConfig) (*Server, error) {
	var err error
	if cfg.Config, err = cfg.Config.withDefaults(); err != nil {
		return nil, err
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	switch {
	case cfg.MaxHandshakesPerIP == 0:
		cfg.MaxHandshakesPerIP = DefaultMaxHandshakesPerIP
	case cfg.MaxHandshakesPerIP < 0:
		cfg.MaxHandshakesPerIP = 0 // perIP's unbounded
	}
	if cfg.FirstMessageTimeout <= 0 {
		cfg.FirstMessageTimeout = DefaultFirstMessageTimeout
	}
	return &Server{cfg: cfg}, nil
}

// Stats returns the counters of every connection this server accepts.
func (s *Server) Stats() *Stats { return s.cfg.Stats }

// Serve accepts connections on ln until ctx ends or ln fails. It closes ln
// and every connection it accepted, and waits for all of them, before it
// returns; it returns nil when stopped by ctx.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	// Closing ln is what wakes Accept when ctx ends.
	stopWatch := context.AfterFunc(ctx, func() { ln.Close() })
	var wg sync.WaitGroup
	defer func() {
		if stopWatch() {
			ln.Close()
		}
		cancel() // ends handshakes and connections
		wg.Wait()
	}()

	slots := make(chan struct{}, s.cfg.MaxConns)
	sources := newPerIP(s.cfg.MaxHandshakesPerIP, s.cfg.MaxConnsPerIP)
	log := s.cfg.Logger.With("listen", ln.Addr().String())
	var retry time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("link accept on %s: %w", ln.Addr(), err)
			}
			// Probably out of file descriptors: back off instead of spinning,
			// as net/http does.
			retry = min(max(2*retry, 5*time.Millisecond), time.Second)
			log.Warn("link accept failed; retrying", "err", err, "retry_in", retry)
			if !sleepCtx(ctx, retry) {
				return nil
			}
			continue
		}
		retry = 0
		select {
		case slots <- struct{}{}:
		default:
			s.cfg.Stats.ConnsRejected.Add(1)
			log.Debug("link connection refused: at MaxConns", "remote", nc.RemoteAddr().String())
			nc.Close()
			continue
		}
		src := SourceOf(nc.RemoteAddr())
		limit := 0
		if s.cfg.MaxHandshakesFrom != nil {
			limit = s.cfg.MaxHandshakesFrom(src)
		}
		if !sources.startHandshake(src, limit) {
			<-slots
			s.cfg.Stats.ConnsRejectedPerIP.Add(1)
			log.Debug("link connection refused: handshakes from its source at MaxHandshakesPerIP", "remote", nc.RemoteAddr().String())
			nc.Close()
			continue
		}
		wg.Add(1)
		go s.handshake(ctx, nc, src, sources, func() {
			<-slots
			wg.Done()
		})
	}
}

// handshake authenticates one accepted connection and, if it passes, starts
// it. It moves the connection from a handshake slot of its source to a
// connection slot, and release frees its server-wide slot once nothing of it
// runs.
func (s *Server) handshake(ctx context.Context, nc net.Conn, src netip.Prefix, sources *perIP, release func()) {
	sess, err := responderHandshake(ctx, nc, s.cfg.Static, s.cfg.FirstMessageTimeout, s.cfg.HandshakeTimeout)
	if !sources.established(src, err == nil) && err == nil {
		s.cfg.Stats.ConnsRejectedPerIP.Add(1)
		s.cfg.Logger.Debug("link connection refused: links from its source at MaxConnsPerIP", "remote", nc.RemoteAddr().String())
		nc.Close()
		release()
		return
	}
	if err != nil {
		s.cfg.Stats.HandshakeFails.Add(1)
		logHandshakeFailure(&s.cfg.Config, nc, err)
		nc.Close()
		release()
		return
	}
	if s.cfg.Authorize != nil {
		if err := s.cfg.Authorize(sess.remoteStatic); err != nil {
			s.cfg.Stats.Unauthorized.Add(1)
			s.cfg.Logger.Debug("link peer refused", "remote", nc.RemoteAddr().String(), "err", err)
			nc.Close()
			sources.closed(src)
			release()
			return
		}
	}
	c := newConn(ctx, nc, sess, &s.cfg.Config, make(chan Frame, s.cfg.QueueLen), true, func() {
		sources.closed(src)
		release()
	})
	if s.cfg.OnConn != nil {
		s.cfg.OnConn(c)
	}
	c.start()
}

// sleepCtx waits for d or the end of ctx and reports whether d elapsed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
