package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"syscall"
	"time"
)

// fwMark marks the daemon's own sockets: the connections to the directory
// and to the entry gateway, the only traffic that leaves outside the
// tunnel. Policy routing sends every packet without it into the TUN, and
// the kill switch lets out only marked packets to the endpoints it allows
// (platform.RouteConfig.Mark, platform.KillSwitchRules.Mark). It also names
// the tunnel's routing table, as in wg-quick. ("nym" in ASCII.)
const fwMark = 0x6e796d

// outside makes the daemon's connections that must bypass the tunnel. The
// directory is resolved once, and its HTTP client dials only that address;
// a gateway connection opens the kill switch for its address (by open)
// while it lives, so the hole follows the tunnel from entry to entry and
// nothing a node writes in its descriptor opens anything else.
type outside struct {
	dir     netip.AddrPort // the directory, resolved
	dirHost string         // host:port of the directory URL
	// mark sets fwMark on the sockets (needs CAP_NET_ADMIN; the rootless
	// SOCKS proxy changes nothing on the host and does without).
	mark bool
	// open lets marked TCP out to a gateway until release; nil: no kill
	// switch to open.
	open func(netip.AddrPort) (release func(), err error)
	hc   *http.Client // the directory's
}

// newOutside resolves the directory of dirURL.
func newOutside(ctx context.Context, dirURL string, mark bool) (*outside, error) {
	u, err := url.Parse(dirURL)
	if err != nil || u.Hostname() == "" {
		return nil, fmt.Errorf("--directory %q: not a URL with a host", dirURL)
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"https": "443", "http": "80"}[u.Scheme]
		if port == "" {
			return nil, fmt.Errorf("--directory %q: no port and an unknown scheme", dirURL)
		}
	}
	o := &outside{dirHost: net.JoinHostPort(u.Hostname(), port), mark: mark}
	if o.dir, err = resolve(ctx, o.dirHost); err != nil {
		return nil, fmt.Errorf("--directory: %w", err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // a proxy's address is not what the kill switch allows
	tr.DialContext = o.dialDirectory
	o.hc = &http.Client{Timeout: 15 * time.Second, Transport: tr}
	return o, nil
}

func resolve(ctx context.Context, hostport string) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return netip.AddrPort{}, err
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(addrs) == 0 {
		return netip.AddrPort{}, fmt.Errorf("resolving %s: %w", host, err)
	}
	return netip.ParseAddrPort(net.JoinHostPort(addrs[0].Unmap().String(), port))
}

func (o *outside) dialer() *net.Dialer {
	d := &net.Dialer{Timeout: 30 * time.Second}
	if o.mark {
		d.Control = func(_, _ string, c syscall.RawConn) error { return setMark(c, fwMark) }
	}
	return d
}

// dialDirectory dials the directory's resolved address, and nothing else:
// the kill switch lets only it out.
func (o *outside) dialDirectory(ctx context.Context, network, addr string) (net.Conn, error) {
	if addr != o.dirHost {
		return nil, fmt.Errorf("the directory client may reach %s only, not %s", o.dirHost, addr)
	}
	return o.dialer().DialContext(ctx, "tcp", o.dir.String())
}

// close drops the directory client's idle connections.
func (o *outside) close() { o.hc.CloseIdleConnections() }

// dialGateway dials an entry gateway's clients address (TCP), opening the
// kill switch for exactly that address and port while the connection lives.
func (o *outside) dialGateway(ctx context.Context, network, addr string) (net.Conn, error) {
	ap, err := resolve(ctx, addr)
	if err != nil {
		return nil, err
	}
	release := func() {}
	if o.open != nil {
		if release, err = o.open(ap); err != nil {
			return nil, fmt.Errorf("kill switch: letting out %s: %w", ap, err)
		}
	}
	c, err := o.dialer().DialContext(ctx, "tcp", ap.String())
	if err != nil {
		release()
		return nil, err
	}
	return &trackedConn{Conn: c, release: release}, nil // closing it closes the hole
}
