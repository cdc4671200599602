package link

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// DefaultMaxConns bounds a Server's concurrent connections, handshakes
// included, when ServerConfig.MaxConns is zero.
const DefaultMaxConns = 1024

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
		wg.Add(1)
		release := func() {
			<-slots
			wg.Done()
		}
		go s.handshake(ctx, nc, release)
	}
}

// handshake authenticates one accepted connection and, if it passes, starts
// it. release frees the connection's slot once nothing of it runs.
func (s *Server) handshake(ctx context.Context, nc net.Conn, release func()) {
	sess, err := responderHandshake(ctx, nc, s.cfg.Static, s.cfg.HandshakeTimeout)
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
			release()
			return
		}
	}
	c := newConn(ctx, nc, sess, &s.cfg.Config, make(chan Frame, s.cfg.QueueLen), true, release)
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
