package platform

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/godbus/dbus/v5"
)

// systemd-resolved's D-Bus interface (org.freedesktop.resolve1(5)).
const (
	resolvedName    = "org.freedesktop.resolve1"
	resolvedPath    = "/org/freedesktop/resolve1"
	resolvedManager = "org.freedesktop.resolve1.Manager"
)

// resolvedStubs are the addresses of resolved's stub listeners: a
// resolv.conf naming only these hands every query to resolved.
var resolvedStubs = []netip.Addr{netip.MustParseAddr("127.0.0.53"), netip.MustParseAddr("127.0.0.54")}

// resolvedManages tells whether systemd-resolved decides where this host's
// queries go: the resolver file at path names only its stub, and its name
// is on the system bus. Then writing the file would fight resolved (which
// rewrites it) and miss programs that ask resolved over D-Bus or NSS;
// configuring the tunnel's link in resolved catches them all. With a
// resolv.conf that names real servers (resolved's "uplink" mode, or
// another manager's), the file is what programs read, and is replaced.
func resolvedManages(path string) bool {
	b, err := os.ReadFile(path) // through a symbolic link, to what programs read
	if err != nil || !namesOnlyStubs(b) {
		return false
	}
	conn, err := dbus.ConnectSystemBus()
	if err != nil {
		return false
	}
	defer conn.Close()
	var has bool
	if err := conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, resolvedName).Store(&has); err != nil {
		return false
	}
	return has
}

// namesOnlyStubs tells whether a resolv.conf's nameserver lines are all
// resolved's stubs (and there is one).
func namesOnlyStubs(conf []byte) bool {
	n := 0
	sc := bufio.NewScanner(bytes.NewReader(conf))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		a, err := netip.ParseAddr(f[1])
		if err != nil {
			return false
		}
		found := false
		for _, s := range resolvedStubs {
			found = found || a == s
		}
		if !found {
			return false
		}
		n++
	}
	return n > 0
}

// resolvedLink configures one link in resolved over D-Bus.
type resolvedLink struct {
	conn  *dbus.Conn
	index int32
}

func dialResolved(index int) (*resolvedLink, error) {
	conn, err := dbus.ConnectSystemBus()
	if err != nil {
		return nil, fmt.Errorf("system bus: %w", err)
	}
	return &resolvedLink{conn: conn, index: int32(index)}, nil
}

func (r *resolvedLink) call(method string, args ...any) error {
	obj := r.conn.Object(resolvedName, resolvedPath)
	if err := obj.Call(resolvedManager+"."+method, 0, append([]any{r.index}, args...)...).Err; err != nil {
		return fmt.Errorf("resolved %s: %w", method, err)
	}
	return nil
}

// set makes servers the link's DNS servers and the link the route for every
// name: the routing domain "~." matches all names better than a link
// without domains, so no query goes to the uplink's servers or the global
// ones; DefaultRoute too, for resolved versions that look at it first.
func (r *resolvedLink) set(servers []netip.Addr) error {
	type addr struct {
		Family int32
		Addr   []byte
	}
	type domain struct {
		Domain      string
		RoutingOnly bool
	}
	var addrs []addr
	for _, s := range servers {
		fam := int32(2) // AF_INET
		if !s.Unmap().Is4() {
			fam = 10 // AF_INET6
		}
		addrs = append(addrs, addr{fam, s.Unmap().AsSlice()})
	}
	if err := r.call("SetLinkDNS", addrs); err != nil {
		return err
	}
	if err := r.call("SetLinkDomains", []domain{{".", true}}); err != nil {
		return err
	}
	if err := r.call("SetLinkDefaultRoute", true); err != nil {
		return err
	}
	// Answers cached from the uplink's servers would outlive the switch.
	obj := r.conn.Object(resolvedName, resolvedPath)
	if err := obj.Call(resolvedManager+".FlushCaches", 0).Err; err != nil {
		return fmt.Errorf("resolved FlushCaches: %w", err)
	}
	return nil
}

func (r *resolvedLink) revert() error { return r.call("RevertLink") }

func (r *resolvedLink) close() { r.conn.Close() }

// applyResolved sets the link's DNS in resolved, recording it first.
func applyResolved(cfg DNSConfig) (*DNS, error) {
	ifi, err := net.InterfaceByName(cfg.Link)
	if err != nil {
		return nil, fmt.Errorf("dns: link %s: %w", cfg.Link, err)
	}
	rec := dnsRecord{Kind: dnsResolved, Link: cfg.Link, Index: ifi.Index}
	err = updateState(cfg.StatePath, func(st *hostState) error {
		for _, r := range st.DNS {
			if r.Kind == dnsResolved && r.Link == rec.Link && r.Index == rec.Index {
				return nil // left by a crashed run on this very link
			}
		}
		st.DNS = append(st.DNS, rec)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dns: %w", err)
	}
	d := &DNS{statePath: cfg.StatePath, resolved: &rec}
	rl, err := dialResolved(ifi.Index)
	if err == nil {
		err = rl.set(cfg.Servers)
		if err != nil {
			rl.revert()
		}
		rl.close()
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("dns: %w", err), d.Restore())
	}
	return d, nil
}

// restoreResolved reverts the link rec names, if it still exists as the
// same link: a link that went (the TUN of a crashed daemon) took its
// settings in resolved with it.
func restoreResolved(rec dnsRecord) error {
	ifi, err := net.InterfaceByIndex(rec.Index)
	if err != nil || ifi.Name != rec.Link {
		return nil
	}
	rl, err := dialResolved(rec.Index)
	if err != nil {
		return fmt.Errorf("dns: reverting %s in resolved: %w", rec.Link, err)
	}
	defer rl.close()
	if err := rl.revert(); err != nil {
		return fmt.Errorf("dns: reverting %s: %w", rec.Link, err)
	}
	return nil
}
