package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"syscall"
	"time"

	"github.com/nym-go/nym/mixnet/directory"
)

// fwMark marks the daemon's own sockets: the connections to the directory
// and to the entry gateway, the only traffic that leaves outside the
// tunnel. Policy routing sends every packet without it into the TUN, and
// the kill switch lets out only marked packets to the endpoints it allows
// (platform.RouteConfig.Mark, platform.KillSwitchRules.Mark). It also names
// the tunnel's routing table, as in wg-quick. ("nym" in ASCII.)
const fwMark = 0x6e796d

// outside makes the daemon's connections that must bypass the tunnel. The
// directory authorities are resolved once, and its HTTP client dials only
// those addresses; a gateway connection opens the kill switch for its
// address (by open) while it lives, so the hole follows the tunnel from
// entry to entry and nothing a node writes in its descriptor opens anything
// else. The kill switch lets the first authority out (dir); a connection to
// another authority of the network opens a hole for itself as a gateway's
// does.
type outside struct {
	dir netip.AddrPort // the first authority, resolved
	// dirs are the authorities' host:port (of their URLs), resolved.
	dirs map[string]netip.AddrPort
	// mark sets fwMark on the sockets (needs CAP_NET_ADMIN; the rootless
	// SOCKS proxy changes nothing on the host and does without).
	mark bool
	// open lets marked TCP out to a gateway until release; nil: no kill
	// switch to open.
	open func(netip.AddrPort) (release func(), err error)
	hc   *http.Client // the directory's
}

// newOutside resolves the authorities of network. One that does not
// resolve is left out (the fetch then names it); none resolving is an
// error.
func newOutside(ctx context.Context, network *directory.Network, mark bool) (*outside, error) {
	o := &outside{dirs: make(map[string]netip.AddrPort), mark: mark}
	var errs []error
	for _, a := range network.Authorities {
		hostport, err := authorityHost(a.URL)
		if err == nil {
			var ap netip.AddrPort
			if ap, err = resolve(ctx, hostport); err == nil {
				if len(o.dirs) == 0 {
					o.dir = ap
				}
				o.dirs[hostport] = ap
				continue
			}
		}
		errs = append(errs, fmt.Errorf("%s: %w", a, err))
	}
	if len(o.dirs) == 0 {
		return nil, fmt.Errorf("directory: %w", errors.Join(errs...))
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // a proxy's address is not what the kill switch allows
	tr.DialContext = o.dialDirectory
	o.hc = &http.Client{Timeout: 15 * time.Second, Transport: tr}
	return o, nil
}

// authorityHost is the host:port an authority's URL dials.
func authorityHost(dirURL string) (string, error) {
	u, err := url.Parse(dirURL)
	if err != nil || u.Hostname() == "" {
		return "", fmt.Errorf("directory %q: not a URL with a host", dirURL)
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"https": "443", "http": "80"}[u.Scheme]
		if port == "" {
			return "", fmt.Errorf("directory %q: no port and an unknown scheme", dirURL)
		}
	}
	return net.JoinHostPort(u.Hostname(), port), nil
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

// dialDirectory dials an authority's resolved address, and nothing else:
// the kill switch lets the first out, and a hole is opened for another
// while its connection lives.
func (o *outside) dialDirectory(ctx context.Context, network, addr string) (net.Conn, error) {
	ap, ok := o.dirs[addr]
	if !ok {
		return nil, fmt.Errorf("the directory client may reach the network's authorities only, not %s", addr)
	}
	release := func() {}
	if ap != o.dir && o.open != nil {
		var err error
		if release, err = o.open(ap); err != nil {
			return nil, fmt.Errorf("kill switch: letting out authority %s: %w", ap, err)
		}
	}
	c, err := o.dialer().DialContext(ctx, "tcp", ap.String())
	if err != nil {
		release()
		return nil, err
	}
	return &trackedConn{Conn: c, release: release}, nil
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
