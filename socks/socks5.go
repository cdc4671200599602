package socks

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"time"
)

// SOCKS5 methods and commands (RFC 1928 §3, §4) and the username/password
// sub-negotiation (RFC 1929).
const (
	methodNoAuth       = 0x00
	methodUserPass     = 0x02
	methodNoAcceptable = 0xFF

	cmdConnect      = 0x01
	cmdBind         = 0x02
	cmdUDPAssociate = 0x03

	userPassVersion = 0x01
)

// request5 is a parsed SOCKS5 request.
type request5 struct {
	Cmd byte
	Dst Addr
}

// readSOCKS5Request parses a SOCKS5 request (RFC 1928 §4). The error, if
// any, carries the reply code for the client.
func readSOCKS5Request(r io.Reader) (request5, error) {
	var h [4]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return request5{}, err // nothing sent: no reply owed
		}
		return request5{}, badRequest(ReplyCommandNotSupported, "truncated request", err)
	}
	if h[0] != 5 {
		return request5{}, badRequest(ReplyCommandNotSupported, fmt.Sprintf("request version 0x%02x", h[0]), nil)
	}
	switch h[1] {
	case cmdConnect, cmdBind, cmdUDPAssociate:
	default:
		return request5{}, badRequest(ReplyCommandNotSupported, fmt.Sprintf("command 0x%02x", h[1]), nil)
	}
	// RSV (h[2]) must be 0 by the RFC, but clients in the wild send junk
	// there and nothing depends on it.
	dst, err := readAddr5(r, h[3])
	if err != nil {
		return request5{}, err
	}
	return request5{Cmd: h[1], Dst: dst}, nil
}

// readGreeting5 reads VER, NMETHODS and the method list (VER was checked
// by the caller's peek).
func readGreeting5(r io.Reader) ([]byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, fmt.Errorf("read greeting: %w", err)
	}
	methods := make([]byte, h[1])
	if _, err := io.ReadFull(r, methods); err != nil {
		return nil, fmt.Errorf("read methods: %w", err)
	}
	return methods, nil
}

// readUserPass reads an RFC 1929 username/password request.
func readUserPass(r io.Reader) (user, pass string, err error) {
	var b [1]byte
	readField := func() (string, error) {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return "", err
		}
		f := make([]byte, b[0])
		_, err := io.ReadFull(r, f)
		return string(f), err
	}
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return "", "", fmt.Errorf("read auth version: %w", err)
	}
	if b[0] != userPassVersion {
		return "", "", fmt.Errorf("username/password version 0x%02x", b[0])
	}
	if user, err = readField(); err != nil {
		return "", "", fmt.Errorf("read username: %w", err)
	}
	if pass, err = readField(); err != nil {
		return "", "", fmt.Errorf("read password: %w", err)
	}
	return user, pass, nil
}

// serve5 runs a SOCKS5 connection: negotiation, request, then the relay or
// the UDP association.
func (s *Server) serve5(ctx context.Context, c net.Conn, br *bufio.Reader, log *slog.Logger) error {
	methods, err := readGreeting5(br)
	if err != nil {
		s.stats.rejected.Add(1)
		return err
	}
	// Prefer username/password when offered even if not required: curl and
	// Firefox offer both, and the user name is what selects the circuit.
	method := byte(methodNoAcceptable)
	switch {
	case slices.Contains(methods, methodUserPass):
		method = methodUserPass
	case s.Authenticate == nil && slices.Contains(methods, methodNoAuth):
		method = methodNoAuth
	}
	if _, err := c.Write([]byte{5, method}); err != nil {
		return fmt.Errorf("write method: %w", err)
	}
	if method == methodNoAcceptable {
		s.stats.rejected.Add(1)
		return fmt.Errorf("no acceptable method in %v", methods)
	}
	var user string
	if method == methodUserPass {
		u, pass, err := readUserPass(br)
		if err == nil && s.Authenticate != nil {
			if aerr := s.Authenticate(u, pass); aerr != nil {
				err = fmt.Errorf("user %q refused: %w", u, aerr)
			}
		}
		status := byte(0)
		if err != nil {
			status = 1
		}
		if _, werr := c.Write([]byte{userPassVersion, status}); werr != nil && err == nil {
			err = fmt.Errorf("write auth status: %w", werr)
		}
		if err != nil {
			s.stats.rejected.Add(1)
			return err
		}
		user = u
	}

	req, err := readSOCKS5Request(br)
	if err != nil {
		if errors.Is(err, io.EOF) {
			s.stats.rejected.Add(1)
			return fmt.Errorf("read request: %w", err)
		}
		return s.fail5(c, replyFor(err), fmt.Errorf("read request: %w", err))
	}
	log = log.With("user", user, "cmd", req.Cmd, "dst", req.Dst.String())
	d := s.dialerFor(user)
	switch req.Cmd {
	case cmdConnect:
		return s.connect5(ctx, c, br, d, req, log)
	case cmdUDPAssociate:
		return s.associate(ctx, c, br, d, req, log)
	default:
		return s.fail5(c, ReplyCommandNotSupported, errors.New("BIND is not supported"))
	}
}

func (s *Server) connect5(ctx context.Context, c net.Conn, br *bufio.Reader, d Dialer, req request5, log *slog.Logger) error {
	// The dial has DialTimeout of its own; the handshake deadline left on c
	// would fail the reply of a dial that outlasts it.
	c.SetDeadline(time.Time{})
	target, err := s.dial(ctx, d, req.Dst)
	if err != nil {
		return s.fail5(c, replyFor(err), err)
	}
	reply, err := reply5(ReplySucceeded, addrOf(target.LocalAddr()))
	if err == nil {
		_, err = c.Write(reply)
	}
	if err != nil {
		target.Close()
		return fmt.Errorf("write reply: %w", err)
	}
	s.stats.connects.Add(1)
	log.Debug("socks: connected")
	c.SetDeadline(time.Time{})
	s.relay(ctx, c, br, target)
	return nil
}

// fail5 sends an error reply and returns err for the log.
func (s *Server) fail5(c net.Conn, code Reply, err error) error {
	s.countError(code)
	b, _ := reply5(code, Addr{})
	writeErrorReply(c, b)
	return fmt.Errorf("reply 0x%02x (%v): %w", byte(code), code, err)
}

// reply5 encodes a SOCKS5 reply.
func reply5(code Reply, bnd Addr) ([]byte, error) {
	return appendAddr5([]byte{5, byte(code), 0}, bnd)
}
