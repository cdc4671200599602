package tun

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// ErrLoopback is returned for a loopback destination: it names the local
// machine, and the userspace stack (gVisor) drops loopback packets arriving
// from the tunnel anyway.
var ErrLoopback = errors.New("tun: loopback addresses are not reachable through the tunnel")

// Net opens connections on a userspace stack made by CreateNetstack: what a
// SOCKS5 server needs (TCP dial, UDP sockets for UDP ASSOCIATE, name
// lookup), and an http.Transport's DialContext. Everything it opens stops
// working when the Device is closed.
type Net struct {
	stack        *stack.Stack
	dns          []netip.Addr
	hasV4, hasV6 bool
}

// DialContext connects to address ("host:port"; host a name or an IP) over
// network "tcp", "tcp4", "tcp6", "udp", "udp4" or "udp6", like
// net.Dialer.DialContext. Names are resolved through the tunnel's DNS
// servers and the addresses tried in turn.
func (n *Net) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	proto, family, ok := splitNetwork(network)
	if !ok {
		return nil, &net.OpError{Op: "dial", Net: network, Err: net.UnknownNetworkError(network)}
	}
	host, portStr, err := net.SplitHostPort(address)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: err}
	}
	port, err := parsePort(network, portStr)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: err}
	}
	addrs, err := n.LookupNetIP(ctx, family, host)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: err}
	}
	var firstErr error
	for i, a := range addrs {
		conn, err := n.dialOne(ctx, proto, netip.AddrPortFrom(a, port), len(addrs)-i)
		if err == nil {
			return conn, nil
		}
		if firstErr == nil {
			firstErr = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, firstErr
}

// dialOne tries one address, giving it a fair share of the time left when
// more addresses remain after it (as the net package does).
func (n *Net) dialOne(ctx context.Context, proto string, dst netip.AddrPort, remaining int) (net.Conn, error) {
	if deadline, ok := ctx.Deadline(); ok && remaining > 1 {
		share := time.Until(deadline) / time.Duration(remaining)
		if share > 2*time.Second {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, share)
			defer cancel()
		}
	}
	if proto == "udp" {
		return n.DialUDPAddrPort(netip.AddrPort{}, dst)
	}
	return n.DialContextTCPAddrPort(ctx, dst)
}

// DialContextTCPAddrPort opens a TCP connection to dst.
func (n *Net) DialContextTCPAddrPort(ctx context.Context, dst netip.AddrPort) (*gonet.TCPConn, error) {
	full, proto, err := n.fullAddr(dst, true)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(dst), Err: err}
	}
	return gonet.DialContextTCP(ctx, n.stack, full, proto)
}

// DialUDPAddrPort opens a UDP socket connected to raddr. A zero laddr
// picks the local address and port.
func (n *Net) DialUDPAddrPort(laddr, raddr netip.AddrPort) (*UDPConn, error) {
	rfull, proto, err := n.fullAddr(raddr, true)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: "udp", Addr: net.UDPAddrFromAddrPort(raddr), Err: err}
	}
	var lfull *tcpip.FullAddress
	if laddr.IsValid() {
		l, _, err := n.fullAddr(laddr, false)
		if err != nil {
			return nil, &net.OpError{Op: "dial", Net: "udp", Addr: net.UDPAddrFromAddrPort(laddr), Err: err}
		}
		lfull = &l
	}
	c, err := gonet.DialUDP(n.stack, lfull, &rfull, proto)
	if err != nil {
		return nil, err
	}
	return &UDPConn{c}, nil
}

// ListenUDPAddrPort opens an unconnected UDP socket on laddr (port 0 picks
// one; an unspecified address listens on all of the stack's addresses of
// that family, the zero AddrPort on any address and port). This is the
// relay socket behind SOCKS5 UDP ASSOCIATE.
func (n *Net) ListenUDPAddrPort(laddr netip.AddrPort) (*UDPConn, error) {
	l, proto, err := n.fullAddr(laddr, false)
	if err != nil {
		return nil, &net.OpError{Op: "listen", Net: "udp", Addr: net.UDPAddrFromAddrPort(laddr), Err: err}
	}
	c, err := gonet.DialUDP(n.stack, &l, nil, proto)
	if err != nil {
		return nil, err
	}
	return &UDPConn{c}, nil
}

// ListenTCPAddrPort listens for TCP connections on laddr.
func (n *Net) ListenTCPAddrPort(laddr netip.AddrPort) (*gonet.TCPListener, error) {
	l, proto, err := n.fullAddr(laddr, false)
	if err != nil {
		return nil, &net.OpError{Op: "listen", Net: "tcp", Addr: net.TCPAddrFromAddrPort(laddr), Err: err}
	}
	return gonet.ListenTCP(n.stack, l, proto)
}

// fullAddr converts ap for gVisor. A remote address must be a usable
// destination; a local one may be unspecified (any address).
func (n *Net) fullAddr(ap netip.AddrPort, remote bool) (tcpip.FullAddress, tcpip.NetworkProtocolNumber, error) {
	a := ap.Addr().Unmap()
	if !a.IsValid() && !remote {
		// Any local address, of the stack's own family (IPv4 first).
		a = netip.IPv4Unspecified()
		if !n.hasV4 {
			a = netip.IPv6Unspecified()
		}
	}
	switch {
	case !a.IsValid():
		return tcpip.FullAddress{}, 0, errors.New("no address")
	case a.Zone() != "":
		return tcpip.FullAddress{}, 0, fmt.Errorf("address %v: zones are not supported", ap.Addr())
	case a.IsLoopback():
		return tcpip.FullAddress{}, 0, ErrLoopback
	case remote && a.IsUnspecified():
		return tcpip.FullAddress{}, 0, fmt.Errorf("address %v: unspecified destination", a)
	}
	full := tcpip.FullAddress{Port: ap.Port()}
	if !a.IsUnspecified() {
		full.Addr = tcpip.AddrFromSlice(a.AsSlice())
	}
	if a.Is4() {
		return full, ipv4.ProtocolNumber, nil
	}
	return full, ipv6.ProtocolNumber, nil
}

// splitNetwork maps a Go network name to the transport and the address
// family LookupNetIP takes.
func splitNetwork(network string) (proto, family string, ok bool) {
	switch network {
	case "tcp", "udp":
		return network, "ip", true
	case "tcp4", "udp4":
		return network[:3], "ip4", true
	case "tcp6", "udp6":
		return network[:3], "ip6", true
	}
	return "", "", false
}

// parsePort accepts a number or a service name ("https"), which the net
// package looks up locally, never on the network.
func parsePort(network, s string) (uint16, error) {
	if p, err := strconv.ParseUint(s, 10, 16); err == nil {
		return uint16(p), nil
	}
	p, err := net.LookupPort(network, s)
	if err != nil {
		return 0, err
	}
	return uint16(p), nil
}

// UDPConn is a UDP socket on the userspace stack. Its WriteTo takes the
// destination from any *net.UDPAddr (4- or 16-byte IPv4) and returns an
// error for other net.Addr types, where gonet's would panic or send an
// IPv4-mapped address as IPv6.
type UDPConn struct {
	*gonet.UDPConn
}

// WriteTo sends b to addr, which must be a *net.UDPAddr.
func (c *UDPConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, &net.OpError{Op: "write", Net: "udp", Addr: addr, Err: fmt.Errorf("unsupported address type %T", addr)}
	}
	return c.WriteToUDPAddrPort(b, ua.AddrPort())
}

// WriteToUDPAddrPort sends b to addr.
func (c *UDPConn) WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	a := addr.Addr().Unmap()
	if !a.IsValid() || a.IsUnspecified() {
		return 0, &net.OpError{Op: "write", Net: "udp", Addr: net.UDPAddrFromAddrPort(addr), Err: errors.New("no destination address")}
	}
	if a.IsLoopback() {
		return 0, &net.OpError{Op: "write", Net: "udp", Addr: net.UDPAddrFromAddrPort(addr), Err: ErrLoopback}
	}
	return c.UDPConn.WriteTo(b, net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, addr.Port())))
}
