package main

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nym-go/nym/platform"
	"github.com/nym-go/nym/tun"
)

// The allow-LAN lab: the client's uplink c0 is on a LAN (192.168.77.0/24,
// fd77::/64 and link-local) whose router r0, in the world namespace, is
// also the LAN host the tests reach; the "internet" (203.0.113.80,
// 2001:db8:80::80) is beyond it, by the client's default routes. A second
// link c1 leads to another private network (10.55.0.0/24, the side
// namespace) that is not the uplink's: allow-LAN must not open it.
const (
	lanPort   = "7000"
	lanHost4  = "192.168.77.1"
	lanHost6  = "fd77::1"
	lanHostLL = "fe80::1"
	inetHost4 = "203.0.113.80"
	inetHost6 = "2001:db8:80::80"
	sideHost  = "10.55.0.1"
)

func newLANLab(t *testing.T) *lab {
	requireRoot(t)
	n := nsSeq.Add(1)
	l := &lab{t: t, dir: t.TempDir(),
		client: fmt.Sprintf("nlc%d-%d", os.Getpid(), n), world: fmt.Sprintf("nlw%d-%d", os.Getpid(), n)}
	side := fmt.Sprintf("nls%d-%d", os.Getpid(), n)
	for _, ns := range []string{l.client, l.world, side} {
		exec.Command("ip", "netns", "del", ns).Run() // a stale one of a killed run
		run(t, "ip", "netns", "add", ns)
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				t.Errorf("delete namespace %s: %v %s", ns, err, out)
			}
		})
		run(t, "ip", "-n", ns, "link", "set", "lo", "up")
		// No duplicate address detection: the addresses are usable at once.
		run(t, "ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv6.conf.default.accept_dad=0", "net.ipv6.conf.all.accept_dad=0")
	}
	run(t, "ip", "-n", l.client, "link", "add", "c0", "type", "veth", "peer", "name", "r0", "netns", l.world)
	run(t, "ip", "-n", l.client, "link", "add", "c1", "type", "veth", "peer", "name", "s0", "netns", side)
	for _, a := range [][]string{
		{l.client, "c0", "192.168.77.2/24"}, {l.client, "c0", "fd77::2/64"}, {l.client, "c0", "fe80::2/64"},
		{l.world, "r0", lanHost4 + "/24"}, {l.world, "r0", lanHost6 + "/64"}, {l.world, "r0", lanHostLL + "/64"},
		{l.world, "lo", inetHost4 + "/32"}, {l.world, "lo", inetHost6 + "/128"},
		{l.client, "c1", "10.55.0.2/24"}, {side, "s0", sideHost + "/24"},
	} {
		run(t, "ip", "-n", a[0], "addr", "add", a[2], "dev", a[1], "nodad")
	}
	for _, a := range [][]string{{l.client, "c0"}, {l.client, "c1"}, {l.world, "r0"}, {side, "s0"}} {
		run(t, "ip", "-n", a[0], "link", "set", a[1], "up")
	}
	run(t, "ip", "-n", l.client, "route", "add", "default", "via", lanHost4)
	run(t, "ip", "-n", l.client, "-6", "route", "add", "default", "via", lanHost6)

	// One server in the world (dual stack: the LAN and the internet) and
	// one in the side network, accepting and closing.
	for _, ns := range []string{l.world, side} {
		var wg sync.WaitGroup
		var ln net.Listener
		l.in(ns, func() error {
			var err error
			ln, err = net.Listen("tcp", ":"+lanPort)
			return err
		})
		wg.Go(func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		})
		t.Cleanup(func() { ln.Close(); wg.Wait() })
	}
	return l
}

// reaches tells whether a TCP connection from the client to host gets
// through. A connection that should: tried until a generous deadline (the
// machine may be busy). One that should not: dropped packets time out.
func (l *lab) reaches(host string, want bool) bool {
	addr := net.JoinHostPort(host, lanPort)
	deadline := time.Now().Add(10 * time.Second)
	timeout := time.Second // what is dropped stays dropped: the counters tell
	if want {
		timeout = 3 * time.Second
	}
	for {
		var ok bool
		l.in(l.client, func() error {
			c, err := net.DialTimeout("tcp", addr, timeout)
			if err == nil {
				ok = true
				c.Close()
			}
			return nil
		})
		if ok || !want || time.Now().After(deadline) {
			return ok
		}
	}
}

// countAny is count for packets matching any of matches.
func (l *lab) countAny(name string, matches ...string) func() int64 {
	get := l.count(name, matches[0])
	for _, m := range matches[1:] {
		run(l.t, "ip", "netns", "exec", l.client, "nft", "add rule inet test_count post oifname c0 "+m+" counter name "+name)
	}
	return get
}

// lanHosts are the LAN's addresses as the client dials them.
var lanHosts = []string{lanHost4, lanHost6, lanHostLL + "%c0"}

// internetHosts are addresses beyond the LAN, behind its router.
var internetHosts = []string{inetHost4, inetHost6}

// TestAllowLAN: with allow-LAN on (turned on and off live, while the TUN
// and the tunnel's routes are up), the client reaches a host on its LAN by
// IPv4, IPv6 ULA and IPv6 link-local, and not with it off; a private
// network on another link is never opened; and the internet is never
// reached outside the tunnel either way, also when the LAN is hostile and
// hands the uplink a public prefix and a /0.
func TestAllowLAN(t *testing.T) {
	l := newLANLab(t)
	inet := l.countAny("internet", "ip daddr "+inetHost4, "ip6 daddr "+inetHost6)
	lan := l.countAny("lanhost", "meta l4proto tcp ip daddr 192.168.77.0/24", "meta l4proto tcp ip6 daddr { fd77::/64, fe80::/64 }")

	// Without the VPN everything answers, and the counters count.
	for _, h := range append(append(append([]string{}, lanHosts...), internetHosts...), sideHost) {
		if !l.reaches(h, true) {
			t.Fatalf("%s does not answer the client before the VPN", h)
		}
	}
	if inet() < 4 || lan() < 6 {
		t.Fatalf("counters: %d packets to the internet, %d to the LAN; the counters do not count", inet(), lan())
	}
	l.resetCounters()

	// The host, as the daemon has it once connected: kill switch, TUN,
	// the tunnel's routes. Nothing reads the TUN: what goes in is lost,
	// never out by the uplink.
	state := filepath.Join(l.dir, "state", "platform.state")
	var h host
	var dev tun.Device
	l.in(l.client, func() error {
		var err error
		if h, err = newHost(state); err != nil {
			return err
		}
		if err := h.KillSwitch(netip.MustParseAddrPort("192.0.2.1:8000")); err != nil {
			return err
		}
		dev, err = h.Up([]netip.Prefix{netip.MustParsePrefix("100.64.0.2/16"), netip.MustParsePrefix("2001:db8:ffff::2/112")}, 1420, nil)
		return err
	})
	t.Cleanup(func() {
		l.in(l.client, h.Down)
		dev.Close()
	})
	setLAN := func(on bool) {
		t.Helper()
		l.in(l.client, func() error { return h.SetAllowLAN(on) })
	}
	check := func(lanOn bool) {
		t.Helper()
		for _, a := range lanHosts {
			if got := l.reaches(a, lanOn); got != lanOn {
				t.Errorf("allow-LAN %v: LAN host %s reached: %v", lanOn, a, got)
			}
		}
		for _, a := range append(internetHosts, sideHost) {
			if l.reaches(a, false) {
				t.Errorf("allow-LAN %v: %s reached outside the tunnel", lanOn, a)
			}
		}
		if n := inet(); n != 0 {
			t.Errorf("allow-LAN %v: %d packets to the internet left the uplink", lanOn, n)
		}
		if n := lan(); (n != 0) != lanOn {
			t.Errorf("allow-LAN %v: %d TCP packets to the LAN left the uplink", lanOn, n)
		}
		l.resetCounters()
	}

	t.Run("off", func(t *testing.T) { check(false) })
	setLAN(true)
	t.Run("on", func(t *testing.T) {
		check(true)
		// The LAN bypasses the tunnel by the main table's connected
		// routes; everything else goes into it.
		for _, a := range []string{lanHost4, lanHost6} {
			if got := run(t, "ip", "-n", l.client, "route", "get", a); !strings.Contains(got, "dev c0") {
				t.Errorf("LAN host %s routed %q, not by the uplink", a, got)
			}
		}
		for _, a := range internetHosts {
			if got := run(t, "ip", "-n", l.client, "route", "get", a); !strings.Contains(got, "dev "+tunName) {
				t.Errorf("internet host %s routed %q, not into the tunnel", a, got)
			}
		}
	})
	setLAN(false)
	t.Run("off again", func(t *testing.T) { check(false) })

	// A hostile LAN: the uplink gets a public prefix (the internet host's
	// own) and a /0. Neither becomes LAN, whatever the routes now say.
	run(t, "ip", "-n", l.client, "addr", "add", "203.0.113.2/24", "dev", "c0", "nodad")
	run(t, "ip", "-n", l.client, "addr", "add", "198.51.100.2/0", "dev", "c0", "nodad")
	run(t, "ip", "-n", l.client, "addr", "add", "2001:db8:80::2/64", "dev", "c0", "nodad")
	setLAN(true)
	t.Run("hostile LAN", func(t *testing.T) {
		check(true)
		ks := run(t, "ip", "netns", "exec", l.client, "nft", "list", "table", "inet", platform.KillSwitchTable)
		for _, p := range []string{"203.0.113", "198.51.100", "0.0.0.0/0", "2001:db8"} {
			if strings.Contains(ks, p) {
				t.Errorf("the kill switch names %s:\n%s", p, ks)
			}
		}
	})
}

// TestDaemonConnectAllowLAN: `connect --allow-lan` reaches the daemon over
// the control socket and opens the LAN (here through a connect that fails,
// the directory refusing: the kill switch stays, and with it the LAN
// exception); a connect without it closes the LAN again; the internet
// stays unreachable outside the tunnel throughout.
func TestDaemonConnectAllowLAN(t *testing.T) {
	l := newLANLab(t)
	inet := l.countAny("internet", "ip daddr "+inetHost4, "ip6 daddr "+inetHost6)
	for _, h := range internetHosts {
		if !l.reaches(h, true) {
			t.Fatalf("%s does not answer the client before the VPN", h)
		}
	}
	if inet() == 0 {
		t.Fatal("the counter did not count packets to the internet")
	}
	l.resetCounters()
	d := l.startDaemon(0)
	for _, allow := range []bool{true, false} {
		req := connectRequest{DirectoryURL: "http://" + lanHost4 + ":8000", DirectoryKey: testDirKey, Profile: "nodelay", KillSwitch: true, AllowLAN: allow}
		if _, err := call(d.socket, request{Op: "connect", Connect: &req}); err == nil {
			t.Fatal("connect with a refusing directory succeeded")
		}
		for _, a := range []string{lanHost4, lanHost6} {
			if got := l.reaches(a, allow); got != allow {
				t.Errorf("connect --allow-lan=%v: LAN host %s reached: %v", allow, a, got)
			}
		}
		for _, a := range internetHosts {
			if l.reaches(a, false) {
				t.Errorf("connect --allow-lan=%v: %s reached outside the tunnel", allow, a)
			}
		}
		if n := inet(); n != 0 {
			t.Errorf("connect --allow-lan=%v: %d packets to the internet left the uplink", allow, n)
		}
	}
	if _, err := call(d.socket, request{Op: "disconnect"}); err != nil {
		t.Fatal(err)
	}
	if !l.reaches(lanHost4, true) || !l.reaches(inetHost4, true) {
		t.Error("after disconnect the client does not reach the LAN and the internet")
	}
}
