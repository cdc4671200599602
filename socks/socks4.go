package socks

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"time"
)

// maxSOCKS4String bounds the NUL-terminated user id and SOCKS4a host name,
// so a client cannot make us buffer without end.
const maxSOCKS4String = 255

// request4 is a parsed SOCKS4 or SOCKS4a request.
type request4 struct {
	Cmd  byte
	Dst  Addr
	User string
}

// readSOCKS4Request parses a SOCKS4 request from its version byte, with the
// SOCKS4a extension: a destination IP of 0.0.0.x (x ≠ 0) means a host name
// follows the user id.
func readSOCKS4Request(r *bufio.Reader) (request4, error) {
	var h [8]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return request4{}, badRequest(ReplyCommandNotSupported, "truncated SOCKS4 request", eofToUnexpected(err))
	}
	if h[0] != 4 {
		return request4{}, badRequest(ReplyCommandNotSupported, fmt.Sprintf("version 0x%02x", h[0]), nil)
	}
	req := request4{Cmd: h[1], Dst: Addr{
		Port: binary.BigEndian.Uint16(h[2:4]),
		IP:   netip.AddrFrom4([4]byte(h[4:8])),
	}}
	user, err := readCString(r)
	if err != nil {
		return request4{}, badRequest(ReplyCommandNotSupported, "user id", err)
	}
	req.User = user
	if h[4] == 0 && h[5] == 0 && h[6] == 0 && h[7] != 0 {
		name, err := readCString(r)
		if err != nil {
			return request4{}, badRequest(ReplyCommandNotSupported, "SOCKS4a host name", err)
		}
		if name == "" {
			return request4{}, badRequest(ReplyCommandNotSupported, "empty SOCKS4a host name", nil)
		}
		if err := checkName([]byte(name)); err != nil {
			return request4{}, err
		}
		req.Dst = Addr{Name: name, Port: req.Dst.Port}
	}
	// Checked last so the whole request is consumed before the reply.
	if req.Cmd != cmdConnect {
		return request4{}, badRequest(ReplyCommandNotSupported, fmt.Sprintf("SOCKS4 command 0x%02x", req.Cmd), nil)
	}
	return req, nil
}

// readCString reads a NUL-terminated string of at most maxSOCKS4String bytes.
func readCString(r *bufio.Reader) (string, error) {
	var b []byte
	for {
		c, err := r.ReadByte()
		if err != nil {
			return "", eofToUnexpected(err)
		}
		if c == 0 {
			return string(b), nil
		}
		if len(b) == maxSOCKS4String {
			return "", errors.New("string longer than 255 bytes")
		}
		b = append(b, c)
	}
}

// serve4 runs a SOCKS4 or SOCKS4a connection.
func (s *Server) serve4(ctx context.Context, c net.Conn, br *bufio.Reader, log *slog.Logger) error {
	req, err := readSOCKS4Request(br)
	if err != nil {
		return s.fail4(c, socks4Code(replyFor(err)), replyFor(err), fmt.Errorf("read SOCKS4 request: %w", err))
	}
	log = log.With("user", req.User, "dst", req.Dst.String())
	if s.Authenticate != nil {
		if err := s.Authenticate(req.User, ""); err != nil {
			s.stats.rejected.Add(1)
			b := reply4(socks4BadUser, Addr{})
			writeErrorReply(c, b)
			return fmt.Errorf("user id %q refused: %w", req.User, err)
		}
	}
	c.SetDeadline(time.Time{}) // as connect5: the dial has DialTimeout
	target, err := s.dial(ctx, s.dialerFor(req.User), req.Dst)
	if err != nil {
		return s.fail4(c, socks4Rejected, replyFor(err), err)
	}
	// SOCKS4 can only report an IPv4 bound address; clients ignore it.
	if _, err := c.Write(reply4(socks4Granted, addrOf(target.LocalAddr()))); err != nil {
		target.Close()
		return fmt.Errorf("write SOCKS4 reply: %w", err)
	}
	s.stats.connects.Add(1)
	log.Debug("socks: connected")
	c.SetDeadline(time.Time{})
	s.relay(ctx, c, br, target)
	return nil
}

// fail4 sends a SOCKS4 error reply, counting it under the SOCKS5 code it
// stands for.
func (s *Server) fail4(c net.Conn, code byte, counted Reply, err error) error {
	s.countError(counted)
	writeErrorReply(c, reply4(code, Addr{}))
	return fmt.Errorf("SOCKS4 reply 0x%02x (%v): %w", code, counted, err)
}

// reply4 encodes a SOCKS4 reply: VN 0, CD, port, IPv4 address.
func reply4(code byte, bnd Addr) []byte {
	b := []byte{0, code, 0, 0, 0, 0, 0, 0}
	if bnd.IP.Is4() || bnd.IP.Is4In6() {
		binary.BigEndian.PutUint16(b[2:4], bnd.Port)
		ip := bnd.IP.Unmap().As4()
		copy(b[4:], ip[:])
	}
	return b
}
