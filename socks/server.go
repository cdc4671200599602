// Package socks is a SOCKS4, SOCKS4a and SOCKS5 server (RFC 1928, RFC 1929)
// whose outbound side is a Dialer: the host network in tests, the userspace
// TCP/IP stack over the mixnet in `nymvpn socks5`. Names are resolved only
// through the Dialer, so a lookup never leaks to the host's resolver.
package socks

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Dialer is the outbound side of the server. *tun.Net fits it with a
// one-method adapter for ListenPacket (ListenUDPAddrPort(netip.AddrPort{})).
type Dialer interface {
	// DialContext opens a TCP connection. The server only ever passes an
	// IP literal and port as address: names were resolved by LookupNetIP.
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
	// ListenPacket opens an unconnected UDP socket for a UDP ASSOCIATE.
	// WriteTo is always given a *net.UDPAddr.
	ListenPacket(ctx context.Context, network string) (net.PacketConn, error)
	// LookupNetIP resolves host (network "ip") like net.Resolver.LookupNetIP.
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Defaults for the zero values of Server's fields.
const (
	DefaultHandshakeTimeout = 10 * time.Second
	// The mixnet adds seconds of latency to a TCP handshake; a short
	// timeout would fail connections that would have worked.
	DefaultDialTimeout = 60 * time.Second
	DefaultMaxConns    = 1024
)

// Server serves SOCKS clients. Set the fields before calling Serve and do
// not change them afterwards.
type Server struct {
	// Dialer is the outbound side used when Isolate is nil or returns nil.
	Dialer Dialer
	// Isolate, when set, picks the outbound side from the user name (SOCKS5
	// username, SOCKS4 user id; "" without one), so each user name gets its
	// own circuit, as Tor's IsolateSOCKSAuth does.
	Isolate func(user string) Dialer
	// Authenticate, when set, makes credentials required: SOCKS5 clients
	// must use username/password and SOCKS4 user ids are checked with an
	// empty password. A non-nil error refuses the client.
	Authenticate func(user, password string) error
	// HandshakeTimeout bounds everything before the relay starts, except
	// the outbound dial.
	HandshakeTimeout time.Duration
	// DialTimeout bounds name resolution plus the outbound connect.
	DialTimeout time.Duration
	// MaxConns bounds concurrent client connections; further clients wait
	// in the listen backlog.
	MaxConns int
	// Logger receives connection-level events; nil means slog.Default().
	Logger *slog.Logger

	stats counters
}

// counters are the live values behind Stats.
type counters struct {
	accepted, active       atomic.Int64
	connects, associations atomic.Uint64
	bytesUp, bytesDown     atomic.Uint64
	udpDropped, rejected   atomic.Uint64
	errors                 [256]atomic.Uint64
}

// Stats is a snapshot of the server's counters.
type Stats struct {
	Accepted        int64 // client connections accepted
	Active          int64 // client connections being served now
	Connects        uint64
	UDPAssociations uint64
	BytesUp         uint64 // client to destination, TCP and UDP payload
	BytesDown       uint64 // destination to client
	UDPDropped      uint64 // datagrams dropped: wrong source, fragment, malformed, unresolvable
	// Rejected counts clients closed without a request reply: unknown
	// version, no acceptable method, failed authentication, early EOF.
	Rejected uint64
	// Errors counts error replies by SOCKS5 code; SOCKS4 failures are
	// counted under the SOCKS5 code they were mapped from.
	Errors map[Reply]uint64
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	st := Stats{
		Accepted:        s.stats.accepted.Load(),
		Active:          s.stats.active.Load(),
		Connects:        s.stats.connects.Load(),
		UDPAssociations: s.stats.associations.Load(),
		BytesUp:         s.stats.bytesUp.Load(),
		BytesDown:       s.stats.bytesDown.Load(),
		UDPDropped:      s.stats.udpDropped.Load(),
		Rejected:        s.stats.rejected.Load(),
		Errors:          map[Reply]uint64{},
	}
	for i := range s.stats.errors {
		if n := s.stats.errors[i].Load(); n > 0 {
			st.Errors[Reply(i)] = n
		}
	}
	return st
}

// Serve accepts clients on ln until ctx is done or ln fails, and returns
// once every goroutine it started has ended. It closes ln. A cancelled ctx
// is a normal stop and gives nil.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if s.Dialer == nil && s.Isolate == nil {
		ln.Close()
		return errors.New("socks: Server needs a Dialer or Isolate")
	}
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	var wg sync.WaitGroup
	err := s.acceptLoop(ctx, ln, &wg)
	stop()
	cancel() // closes every client connection (see serveConn)
	ln.Close()
	wg.Wait()
	return err
}

func (s *Server) acceptLoop(ctx context.Context, ln net.Listener, wg *sync.WaitGroup) error {
	limit := s.MaxConns
	if limit <= 0 {
		limit = DefaultMaxConns
	}
	sem := make(chan struct{}, limit)
	var backoff time.Duration
	for {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		c, err := ln.Accept()
		if err != nil {
			<-sem
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("socks: accept: %w", err)
			}
			// Out of file descriptors and the like pass; retrying at once
			// would spin.
			backoff = min(max(backoff*2, 5*time.Millisecond), time.Second)
			s.logger().Warn("socks: accept failed, retrying", "err", err, "in", backoff)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		backoff = 0
		s.stats.accepted.Add(1)
		s.stats.active.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			defer s.stats.active.Add(-1)
			s.serveConn(ctx, c)
		}()
	}
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

func (s *Server) handshakeTimeout() time.Duration {
	if s.HandshakeTimeout > 0 {
		return s.HandshakeTimeout
	}
	return DefaultHandshakeTimeout
}

func (s *Server) dialTimeout() time.Duration {
	if s.DialTimeout > 0 {
		return s.DialTimeout
	}
	return DefaultDialTimeout
}

// dialerFor is the outbound side for a user name.
func (s *Server) dialerFor(user string) Dialer {
	if s.Isolate != nil {
		if d := s.Isolate(user); d != nil {
			return d
		}
	}
	return s.Dialer
}

// serveConn runs one client connection to its end.
func (s *Server) serveConn(ctx context.Context, c net.Conn) {
	defer c.Close()
	// Closing the connection is what unblocks its reads and writes when
	// the server stops.
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	log := s.logger().With("client", c.RemoteAddr().String())

	c.SetDeadline(time.Now().Add(s.handshakeTimeout()))
	br := bufio.NewReaderSize(c, 1024)
	ver, err := br.Peek(1)
	if err != nil {
		s.stats.rejected.Add(1)
		log.Debug("socks: no greeting", "err", err)
		return
	}
	switch ver[0] {
	case 4:
		err = s.serve4(ctx, c, br, log)
	case 5:
		err = s.serve5(ctx, c, br, log)
	default:
		// Neither protocol lets us answer an unknown version.
		s.stats.rejected.Add(1)
		err = fmt.Errorf("unknown SOCKS version 0x%02x", ver[0])
	}
	if err != nil {
		log.Debug("socks: connection ended", "err", err)
	}
}

// dial resolves dst through d and connects to its addresses in turn.
func (s *Server) dial(ctx context.Context, d Dialer, dst Addr) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, s.dialTimeout())
	defer cancel()
	ips, err := resolve(ctx, d, dst)
	if err != nil {
		return nil, err
	}
	var firstErr error
	for _, ip := range ips {
		conn, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(ip, dst.Port).String())
		if err == nil {
			return conn, nil
		}
		if firstErr == nil {
			firstErr = err
		}
		if ctx.Err() != nil || errors.Is(err, ErrPolicy) {
			break
		}
	}
	return nil, fmt.Errorf("connect %v: %w", dst, firstErr)
}

// resolve returns dst's addresses, asking only d for a name.
func resolve(ctx context.Context, d Dialer, dst Addr) ([]netip.Addr, error) {
	if dst.Name == "" {
		return []netip.Addr{dst.IP.Unmap()}, nil
	}
	if ip, err := netip.ParseAddr(dst.Name); err == nil {
		return []netip.Addr{ip.Unmap()}, nil
	}
	ips, err := d.LookupNetIP(ctx, "ip", dst.Name)
	if err != nil {
		return nil, &resolveError{fmt.Errorf("%s: %w", dst.Name, err)}
	}
	if len(ips) == 0 {
		return nil, &resolveError{fmt.Errorf("%s: no addresses", dst.Name)}
	}
	for i := range ips {
		ips[i] = ips[i].Unmap()
	}
	return ips, nil
}

// countError records an error reply.
func (s *Server) countError(code Reply) {
	s.stats.errors[code].Add(1)
}

// writeErrorReply gives an error reply a fresh short deadline: the
// handshake deadline may be what failed.
func writeErrorReply(c net.Conn, b []byte) {
	c.SetWriteDeadline(time.Now().Add(time.Second))
	c.Write(b)
}

// addrOf is a net.Addr as an Addr; unknown kinds give the zero Addr.
func addrOf(a net.Addr) Addr {
	switch a := a.(type) {
	case *net.TCPAddr:
		return addrFromAddrPort(a.AddrPort())
	case *net.UDPAddr:
		return addrFromAddrPort(a.AddrPort())
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return addrFromAddrPort(ap)
	}
	return Addr{}
}
