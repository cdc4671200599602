package platform

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// routeLab is a namespace with an uplink veth to a router namespace
// (default routes via 192.0.2.1 and 2001:db8:1::1) and a TUN nymvpn0 that
// plays the VPN's TUN.
func routeLab(t *testing.T, suffix string) (ns string, listing func() string) {
	ns = newNS(t, suffix)
	router := newNS(t, suffix+"g")
	vethPair(t, ns, "up0", router, "down0")
	ipNS(t, router, "addr", "add", "192.0.2.1/24", "dev", "down0")
	ipNS(t, router, "addr", "add", "2001:db8:1::1/64", "dev", "down0", "nodad")
	ipNS(t, ns, "addr", "add", "192.0.2.2/24", "dev", "up0")
	ipNS(t, ns, "addr", "add", "2001:db8:1::2/64", "dev", "up0", "nodad")
	ipNS(t, ns, "route", "add", "default", "via", "192.0.2.1")
	ipNS(t, ns, "-6", "route", "add", "default", "via", "2001:db8:1::1")
	ipNS(t, ns, "tuntap", "add", "dev", "nymvpn0", "mode", "tun")
	// The uplink's link-local address appears once the link has carrier
	// and gets its local route only when duplicate address detection ends;
	// a listing taken before would differ from one taken after for no
	// fault of ours. So wait for the route itself, which also covers an
	// address that is not there yet (a loaded machine is slow to make it).
	settled := func() bool {
		return strings.TrimSpace(ipNS(t, ns, "-6", "addr", "show", "dev", "up0", "tentative")) == "" &&
			strings.Contains(ipNS(t, ns, "-6", "route", "show", "table", "local", "dev", "up0"), "fe80::")
	}
	for deadline := time.Now().Add(30 * time.Second); !settled(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("up0's link-local address not settled after 30 s")
		}
	}
	listing = func() string {
		// The qdisc the kernel attaches when a link first goes up stays
		// after it goes down again; it is not ours to compare.
		link := qdisc.ReplaceAllString(ipNS(t, ns, "addr", "show", "nymvpn0"), "")
		return ipNS(t, ns, "-4", "route", "show", "table", "all") + ipNS(t, ns, "-6", "route", "show", "table", "all") + link +
			ipNS(t, ns, "-4", "rule") + ipNS(t, ns, "-6", "rule")
	}
	return ns, listing
}

var qdisc = regexp.MustCompile(`qdisc \S+ `)

const testMark = 0x6e796d

var testRouteConfig = RouteConfig{
	TUN:       "nymvpn0",
	Addresses: []netip.Prefix{netip.MustParsePrefix("10.0.0.7/32"), netip.MustParsePrefix("fc00::7/128")},
	Mark:      testMark,
}

func routeGet(t *testing.T, ns, addr string) string {
	t.Helper()
	return ipNS(t, ns, "route", "get", addr)
}

// routeGetMarked is the route of a packet carrying the tunnel's mark.
func routeGetMarked(t *testing.T, ns, addr string) string {
	t.Helper()
	return ipNS(t, ns, "route", "get", addr, "mark", fmt.Sprint(testMark))
}

// TestRoutesSendEverythingUnmarkedThroughTheTUN: only the tunnel's own
// (marked) sockets use the original routes; no destination is exempt.
func TestRoutesSendEverythingUnmarkedThroughTheTUN(t *testing.T) {
	requireNetAdmin(t)
	ns, listing := routeLab(t, "r")
	before := listing()
	cfg := testRouteConfig
	cfg.StatePath = filepath.Join(t.TempDir(), "state", "state.json")

	routes := applyRoutesIn(t, ns, cfg)

	for _, dst := range []string{"203.0.113.5", "8.8.8.8", "198.51.100.10", "2001:db8:5::1", "2001:db8:2::10"} {
		if got := routeGet(t, ns, dst); !strings.Contains(got, "dev nymvpn0") {
			t.Errorf("route to %s does not go through the TUN: %s", dst, got)
		}
	}
	for dst, want := range map[string]string{
		"198.51.100.10":  "via 192.0.2.1 dev up0",
		"2001:db8:2::10": "via 2001:db8:1::1 dev up0",
		"192.0.2.77":     "dev up0",
	} {
		if got := routeGetMarked(t, ns, dst); !strings.Contains(got, want) {
			t.Errorf("marked packet to %s: route %q, want %q", dst, got, want)
		}
	}
	// As with wg-quick, the local network's own routes stay (the kill
	// switch decides what may go there).
	if got := routeGet(t, ns, "192.0.2.77"); !strings.Contains(got, "dev up0") {
		t.Errorf("the uplink's subnet: %s", got)
	}
	if got := ipNS(t, ns, "addr", "show", "nymvpn0"); !strings.Contains(got, "10.0.0.7/32") || !strings.Contains(got, "fc00::7/128") {
		t.Errorf("TUN addresses missing:\n%s", got)
	}
	if _, err := os.Stat(cfg.StatePath); err != nil {
		t.Errorf("no state file while routes are applied: %v", err)
	}

	// Remove from this goroutine, which is not in the namespace: the
	// Routes value is bound to the namespace it was made in.
	if err := routes.Remove(); err != nil {
		t.Fatal(err)
	}
	if after := listing(); after != before {
		t.Errorf("routes not restored exactly:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if _, err := os.Stat(cfg.StatePath); !os.IsNotExist(err) {
		t.Errorf("state file still present after Remove: %v", err)
	}
	if err := routes.Remove(); err != nil {
		t.Errorf("second Remove: %v", err)
	}
}

func TestRestoreUndoesRoutesOfACrashedRun(t *testing.T) {
	requireNetAdmin(t)
	ns, listing := routeLab(t, "rc")
	before := listing()
	cfg := testRouteConfig
	cfg.StatePath = filepath.Join(t.TempDir(), "state", "state.json")
	mustInNS(t, ns, func() error {
		_, err := ApplyRoutes(cfg) // "crashes": never removed
		return err
	})

	// Restore acts on the calling thread's namespace; here that is the
	// host's, and it must refuse rather than delete routes there.
	if err := Restore(cfg.StatePath); err == nil || !strings.Contains(err.Error(), "namespace") {
		t.Fatalf("Restore in the wrong namespace: err = %v, want a refusal", err)
	}
	if got := routeGet(t, ns, "203.0.113.5"); !strings.Contains(got, "dev nymvpn0") {
		t.Fatalf("refused Restore changed the routes: %s", got)
	}

	mustInNS(t, ns, func() error { return Restore(cfg.StatePath) })
	if after := listing(); after != before {
		t.Errorf("Restore did not undo the routes:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	mustInNS(t, ns, func() error { return Restore(cfg.StatePath) }) // idempotent
}

func TestApplyRoutesTakesOverLeftoversOfACrashedRun(t *testing.T) {
	requireNetAdmin(t)
	ns, listing := routeLab(t, "rt")
	before := listing()
	cfg := testRouteConfig
	cfg.StatePath = filepath.Join(t.TempDir(), "state", "state.json")
	var routes *Routes
	mustInNS(t, ns, func() error {
		if _, err := ApplyRoutes(cfg); err != nil { // crashed run
			return err
		}
		var err error
		routes, err = ApplyRoutes(cfg) // the restarted daemon
		return err
	})
	if err := routes.Remove(); err != nil {
		t.Fatal(err)
	}
	if after := listing(); after != before {
		t.Errorf("leftovers not removed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// TestRoutesBlockIPv6WhenTheTUNCannotCarryIt: a TUN without IPv6 must not
// leave IPv6 on the original default route, where it would leak.
func TestRoutesBlockIPv6WhenTheTUNCannotCarryIt(t *testing.T) {
	requireNetAdmin(t)
	ns, listing := routeLab(t, "r6")
	sh(t, "ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv6.conf.nymvpn0.disable_ipv6=1")
	before := listing()
	cfg := testRouteConfig
	cfg.Addresses = cfg.Addresses[:1] // IPv4 only
	cfg.StatePath = filepath.Join(t.TempDir(), "state", "state.json")
	routes := applyRoutesIn(t, ns, cfg)
	if out, err := exec.Command("ip", "-n", ns, "route", "get", "2001:db8:5::1").CombinedOutput(); err == nil && !strings.Contains(string(out), "unreachable") {
		t.Errorf("IPv6 still routed outside the tunnel: %s", out)
	}
	if got := routeGetMarked(t, ns, "2001:db8:2::10"); !strings.Contains(got, "dev up0") {
		t.Errorf("marked IPv6 blocked too: %s", got)
	}
	if got := routeGet(t, ns, "203.0.113.5"); !strings.Contains(got, "dev nymvpn0") {
		t.Errorf("IPv4 not through the TUN: %s", got)
	}
	if err := routes.Remove(); err != nil {
		t.Fatal(err)
	}
	if after := listing(); after != before {
		t.Errorf("not restored:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// TestRoutesMarkedConnectionsPassAStrictReversePathFilter: the replies to
// the tunnel's own (marked) connections arrive unmarked; a strict reverse
// path filter must not drop them as belonging to the TUN. A server off the
// local link (whose address only the default route reaches) answers a
// marked connection while the routes are applied.
func TestRoutesMarkedConnectionsPassAStrictReversePathFilter(t *testing.T) {
	requireNetAdmin(t)
	ns, listing := routeLab(t, "rp")
	router := fmt.Sprintf("plt%d-rpg", os.Getpid())
	ipNS(t, router, "addr", "add", "198.51.100.10/32", "dev", "lo")
	listenIn(t, router, "198.51.100.10:443")
	sysctl := func(key string) string { return sh(t, "ip", "netns", "exec", ns, "sysctl", "-n", key) }
	sh(t, "ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv4.conf.all.rp_filter=1", "net.ipv4.conf.up0.rp_filter=1")
	validBefore := sysctl("net.ipv4.conf.all.src_valid_mark")
	before := listing()
	cfg := testRouteConfig
	cfg.StatePath = filepath.Join(t.TempDir(), "state", "state.json")
	routes := applyRoutesIn(t, ns, cfg)
	c, err := dialMarkedIn(t, ns, "198.51.100.10:443", testMark, 3*time.Second)
	if err != nil {
		t.Errorf("a marked connection to a server beyond the default route failed under rp_filter=1: %v", err)
	} else {
		if got := readLine(t, c); !strings.HasPrefix(got, "192.0.2.2:") {
			t.Errorf("the server saw %q, want the uplink's address", got)
		}
		c.Close()
	}
	if err := routes.Remove(); err != nil {
		t.Fatal(err)
	}
	if after := listing(); after != before {
		t.Errorf("not restored:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if got := sysctl("net.ipv4.conf.all.src_valid_mark"); got != validBefore {
		t.Errorf("src_valid_mark after Remove: %q, want %q", got, validBefore)
	}
	if got := nftRuleset(t, ns); strings.Contains(got, MarkTable) {
		t.Errorf("table %s left after Remove:\n%s", MarkTable, got)
	}
}
