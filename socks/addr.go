package socks

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
)

// SOCKS5 address types (RFC 1928 §5).
const (
	atypIPv4   = 0x01
	atypDomain = 0x03
	atypIPv6   = 0x04
)

// Addr is a destination as the client sent it: a domain name (resolved
// later, through the Dialer only) or an IP address, and a port.
type Addr struct {
	Name string     // domain name; empty when IP is set
	IP   netip.Addr // literal address; invalid when Name is set
	Port uint16
}

// String returns host:port.
func (a Addr) String() string {
	host := a.Name
	if host == "" {
		host = a.IP.String()
	}
	return joinHostPort(host, a.Port)
}

func joinHostPort(host string, port uint16) string {
	if ip, err := netip.ParseAddr(host); err == nil && ip.Is6() {
		host = "[" + host + "]"
	}
	return host + ":" + strconv.Itoa(int(port))
}

// addrFromAddrPort converts a socket address, unmapping IPv4-in-IPv6 so an
// IPv4 peer is reported with the IPv4 address type.
func addrFromAddrPort(ap netip.AddrPort) Addr {
	return Addr{IP: ap.Addr().Unmap(), Port: ap.Port()}
}

// readAddr5 reads ATYP-specific address and port following an ATYP byte.
func readAddr5(r io.Reader, atyp byte) (Addr, error) {
	var a Addr
	switch atyp {
	case atypIPv4:
		var b [4]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return a, badRequest(ReplyCommandNotSupported, "truncated IPv4 address", eofToUnexpected(err))
		}
		a.IP = netip.AddrFrom4(b)
	case atypIPv6:
		var b [16]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return a, badRequest(ReplyCommandNotSupported, "truncated IPv6 address", eofToUnexpected(err))
		}
		// An IPv4-mapped address names an IPv4 host: keep it as one, so it
		// is dialled, logged, policed and encoded back (appendAddr5) as
		// IPv4, the one form an address has in this package.
		a.IP = netip.AddrFrom16(b).Unmap()
	case atypDomain:
		var n [1]byte
		if _, err := io.ReadFull(r, n[:]); err != nil {
			return a, badRequest(ReplyCommandNotSupported, "truncated domain name", eofToUnexpected(err))
		}
		if n[0] == 0 {
			return a, badRequest(ReplyCommandNotSupported, "empty domain name", nil)
		}
		b := make([]byte, n[0])
		if _, err := io.ReadFull(r, b); err != nil {
			return a, badRequest(ReplyCommandNotSupported, "truncated domain name", eofToUnexpected(err))
		}
		if err := checkName(b); err != nil {
			return a, err
		}
		a.Name = string(b)
	default:
		return a, badRequest(ReplyAddressNotSupported, fmt.Sprintf("address type 0x%02x", atyp), nil)
	}
	var p [2]byte
	if _, err := io.ReadFull(r, p[:]); err != nil {
		return a, badRequest(ReplyCommandNotSupported, "truncated port", eofToUnexpected(err))
	}
	a.Port = binary.BigEndian.Uint16(p[:])
	return a, nil
}

// checkName refuses bytes that no host name contains, so a NUL or a
// control character never reaches a resolver or a log line.
func checkName(b []byte) error {
	for _, c := range b {
		if c <= ' ' || c >= 0x7f {
			return badRequest(ReplyCommandNotSupported, "domain name with invalid byte", nil)
		}
	}
	return nil
}

// appendAddr5 appends ATYP, address and port in SOCKS5 form.
func appendAddr5(b []byte, a Addr) ([]byte, error) {
	switch {
	case a.Name != "":
		if len(a.Name) > 255 {
			return b, errors.New("domain name longer than 255 bytes")
		}
		b = append(b, atypDomain, byte(len(a.Name)))
		b = append(b, a.Name...)
	case a.IP.Is4() || a.IP.Is4In6():
		ip := a.IP.Unmap().As4()
		b = append(b, atypIPv4)
		b = append(b, ip[:]...)
	case a.IP.Is6():
		ip := a.IP.As16()
		b = append(b, atypIPv6)
		b = append(b, ip[:]...)
	default:
		// No address (e.g. an error reply): RFC 1928 still wants one.
		b = append(b, atypIPv4, 0, 0, 0, 0)
	}
	return binary.BigEndian.AppendUint16(b, a.Port), nil
}

// eofToUnexpected reports a request that stopped in the middle as such.
func eofToUnexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
