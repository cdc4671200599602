package platform

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// exitLab builds:
//
//	client c0 10.0.0.2 ── nymtun0 10.0.0.1/16 [exit] x-i 203.0.113.1 ── 203.0.113.2 internet, also
//	                                             │                        172.16.5.5 (private, allowed for tests)
//	                                             │                        192.168.9.9 (private)
//	                                             │                        64:ff9b::c0a8:707 (NAT64 of a private address)
//	                                            c2x ── 10.0.0.3 other client, also
//	                                                   192.168.7.7 (private) and 198.51.100.7 (the
//	                                                   exit's LAN: public addresses, but not the uplink)
//
// A veth named nymtun0 stands in for the IP packet router's TUN. The
// internet namespace has a route back to the clients, so the lab works
// without the exit's table and every refusal below is the table's doing.
type exitLab struct {
	client, other, exit, inet string
}

func newExitLab(t *testing.T) exitLab {
	l := exitLab{client: newNS(t, "xc"), other: newNS(t, "xo"), exit: newNS(t, "xx"), inet: newNS(t, "xi")}
	for _, ns := range []string{l.client, l.other, l.exit, l.inet} {
		// Link-local addresses usable at once: no second of duplicate
		// address detection before neighbour discovery works.
		sh(t, "ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv6.conf.default.accept_dad=0")
	}
	vethPair(t, l.client, "c0", l.exit, "nymtun0")
	ipNS(t, l.exit, "addr", "add", "10.0.0.1/16", "dev", "nymtun0")
	ipNS(t, l.exit, "addr", "add", "fc00::1/112", "dev", "nymtun0", "nodad")
	ipNS(t, l.client, "addr", "add", "10.0.0.2/32", "dev", "c0")
	ipNS(t, l.client, "addr", "add", "fc00::2/128", "dev", "c0", "nodad")
	ipNS(t, l.client, "route", "add", "10.0.0.1", "dev", "c0")
	ipNS(t, l.client, "route", "add", "default", "via", "10.0.0.1")
	ipNS(t, l.client, "-6", "route", "add", "fc00::1", "dev", "c0")
	ipNS(t, l.client, "-6", "route", "add", "default", "via", "fc00::1")

	vethPair(t, l.other, "o0", l.exit, "c2x")
	ipNS(t, l.other, "addr", "add", "10.0.0.3/32", "dev", "o0")
	ipNS(t, l.other, "addr", "add", "192.168.7.7/32", "dev", "lo")
	ipNS(t, l.other, "addr", "add", "198.51.100.7/32", "dev", "lo")
	ipNS(t, l.other, "route", "add", "10.0.0.1", "dev", "o0")
	ipNS(t, l.other, "route", "add", "default", "via", "10.0.0.1")
	ipNS(t, l.exit, "route", "add", "10.0.0.3/32", "dev", "c2x")
	ipNS(t, l.exit, "route", "add", "192.168.7.0/24", "via", "10.0.0.3", "dev", "c2x", "onlink")
	ipNS(t, l.exit, "route", "add", "198.51.100.0/24", "via", "10.0.0.3", "dev", "c2x", "onlink")

	vethPair(t, l.exit, "x-i", l.inet, "i-x")
	ipNS(t, l.exit, "link", "set", "x-i", "mtu", "1300") // the path MTU clamping must find
	ipNS(t, l.exit, "addr", "add", "203.0.113.1/24", "dev", "x-i")
	ipNS(t, l.exit, "addr", "add", "2001:db8:3::1/64", "dev", "x-i", "nodad")
	ipNS(t, l.inet, "addr", "add", "203.0.113.2/24", "dev", "i-x")
	ipNS(t, l.inet, "addr", "add", "2001:db8:3::2/64", "dev", "i-x", "nodad")
	ipNS(t, l.inet, "addr", "add", "172.16.5.5/32", "dev", "lo")
	ipNS(t, l.inet, "addr", "add", "192.168.9.9/32", "dev", "lo")
	ipNS(t, l.inet, "addr", "add", "64:ff9b::c0a8:707/128", "dev", "lo")
	ipNS(t, l.inet, "route", "add", "10.0.0.0/16", "via", "203.0.113.1")
	ipNS(t, l.inet, "-6", "route", "add", "fc00::/112", "via", "2001:db8:3::1")
	// The exit's LAN is reachable from the internet side through the exit,
	// as a neighbour that picks the exit as its router would try.
	ipNS(t, l.inet, "route", "add", "198.51.100.0/24", "via", "203.0.113.1")
	ipNS(t, l.exit, "route", "add", "172.16.5.0/24", "via", "203.0.113.2")
	ipNS(t, l.exit, "route", "add", "192.168.9.0/24", "via", "203.0.113.2")
	ipNS(t, l.exit, "-6", "route", "add", "64:ff9b::/96", "via", "2001:db8:3::2")
	return l
}

// exitSysctlFiles are the forwarding settings the exit may touch.
var exitSysctlFiles = []string{
	"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding",
	"/proc/sys/net/ipv4/conf/nymtun0/forwarding", "/proc/sys/net/ipv4/conf/x-i/forwarding",
	"/proc/sys/net/ipv4/conf/c2x/forwarding", "/proc/sys/net/ipv6/conf/x-i/accept_ra",
}

func (l exitLab) sysctls(t *testing.T) string {
	return strings.Join(strings.Fields(sh(t, "ip", append([]string{"netns", "exec", l.exit, "cat"}, exitSysctlFiles...)...)), " ")
}

func (l exitLab) setForwarding(t *testing.T, on string) {
	for _, key := range []string{"net.ipv4.ip_forward=" + on, "net.ipv6.conf.all.forwarding=" + on} {
		sh(t, "ip", "netns", "exec", l.exit, "sysctl", "-q", "-w", key)
	}
}

// fetch dials addr from the client and returns the line the server writes
// (the address it sees the client at).
func (l exitLab) fetch(t *testing.T, addr string, timeout time.Duration) (string, error) {
	t.Helper()
	c, err := dialIn(t, l.client, "tcp", addr, timeout)
	if err != nil {
		return "", err
	}
	c.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 128)
	n, err := c.Read(buf)
	return strings.TrimSpace(string(buf[:n])), err
}

// mssServer accepts connections at addr in ns and writes the MSS the kernel
// settled on for each, which the client's SYN (as clamped on the way) caps.
func mssServer(t *testing.T, ns, addr string) {
	t.Helper()
	serveIn(t, ns, addr, func(c net.Conn) {
		raw, _ := c.(*net.TCPConn).SyscallConn()
		mss := -1
		raw.Control(func(fd uintptr) { mss, _ = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_MAXSEG) })
		fmt.Fprintf(c, "%d\n", mss)
	})
}

func TestExitNetworking(t *testing.T) {
	requireNetAdmin(t)
	l := newExitLab(t)
	for _, addr := range []string{"203.0.113.2:80", "[2001:db8:3::2]:80", "203.0.113.2:25", "203.0.113.2:8081"} {
		listenIn(t, l.inet, addr)
	}
	for _, addr := range []string{"10.0.0.3:80", "192.168.7.7:80", "198.51.100.7:80"} {
		listenIn(t, l.other, addr)
	}
	for _, addr := range []string{"172.16.5.5:80", "192.168.9.9:80", "[64:ff9b::c0a8:707]:80"} {
		listenIn(t, l.inet, addr)
	}
	listenIn(t, l.exit, "203.0.113.1:80")
	listenIn(t, l.client, "10.0.0.2:7")
	mssServer(t, l.inet, "203.0.113.2:81")
	sh(t, "ip", "netns", "exec", l.exit, "nft", "add table ip operator; add chain ip operator c { type filter hook forward priority 10; }")
	rulesetBefore := nftRuleset(t, l.exit)
	hostBefore := nftRuleset(t, "")
	sysctlsBefore := l.sysctls(t)
	if sysctlsBefore != "0 0 0 0 0 1" {
		t.Fatalf("fresh namespace forwards already: %q", sysctlsBefore)
	}

	// Without the exit's table everything is reachable and nothing is
	// masqueraded: each check below can fail.
	l.setForwarding(t, "1")
	for _, addr := range []string{"203.0.113.2:25", "[2001:db8:3::2]:80", "10.0.0.3:80", "192.168.7.7:80", "203.0.113.1:80",
		"198.51.100.7:80", "192.168.9.9:80", "[64:ff9b::c0a8:707]:80"} {
		if _, err := l.fetch(t, addr, 2*time.Second); err != nil {
			t.Fatalf("lab broken: %s unreachable without the exit table: %v", addr, err)
		}
	}
	if _, err := dialIn(t, l.inet, "tcp", "198.51.100.7:80", 2*time.Second); err != nil {
		t.Fatalf("lab broken: the neighbour cannot route through the exit without its table: %v", err)
	}
	if seen, _ := l.fetch(t, "203.0.113.2:80", 2*time.Second); !strings.HasPrefix(seen, "10.0.0.2:") {
		t.Fatalf("lab broken: internet sees %q without NAT", seen)
	}
	if mss, _ := l.fetch(t, "203.0.113.2:81", 2*time.Second); mss != "1448" {
		t.Fatalf("lab broken: MSS %s without clamping, want 1448", mss)
	}
	l.setForwarding(t, "0")

	policy, err := ParseExitPolicy("reject 203.0.113.2:8081\naccept *:*")
	if err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(t.TempDir(), "state.json")
	var exit *ExitNetworking
	mustInNS(t, l.exit, func() error {
		exit, err = StartExitNetworking(ExitConfig{
			StatePath:      state,
			TUN:            "nymtun0",
			Uplink:         "x-i",
			ClientPrefixes: []netip.Prefix{pfx("10.0.0.0/16"), pfx("fc00::/112")},
			AllowPrivate:   []netip.Prefix{pfx("172.16.5.0/24")},
			Policy:         policy,
		})
		return err
	})
	t.Cleanup(func() { exit.Close() })
	// Issue 10: per interface for IPv4 (not the host's other interfaces),
	// and the uplink keeps its IPv6 autoconfiguration.
	if got, want := l.sysctls(t), "0 1 1 1 0 2"; got != want {
		t.Errorf("forwarding sysctls while running: %q, want %q (%v)", got, want, exitSysctlFiles)
	}

	// Masquerade, both families.
	if seen, err := l.fetch(t, "203.0.113.2:80", 2*time.Second); err != nil || !strings.HasPrefix(seen, "203.0.113.1:") {
		t.Errorf("internet sees the client as %q (%v), want the exit's 203.0.113.1", seen, err)
	}
	if seen, err := l.fetch(t, "[2001:db8:3::2]:80", 2*time.Second); err != nil || !strings.HasPrefix(seen, "[2001:db8:3::1]:") {
		t.Errorf("internet sees the IPv6 client as %q (%v), want the exit's 2001:db8:3::1", seen, err)
	}
	if seen, err := l.fetch(t, "172.16.5.5:80", 2*time.Second); err != nil || seen == "" {
		t.Errorf("private range the operator allows is unreachable: %v", err)
	}
	// MSS clamped to the uplink's 1300-byte MTU: 1300-40, less 12 bytes of
	// timestamps.
	if mss, err := l.fetch(t, "203.0.113.2:81", 2*time.Second); err != nil || mss != "1248" {
		t.Errorf("MSS through the exit %q (%v), want 1248", mss, err)
	}

	// Refusals: TCP gets a reset at once, not a timeout.
	for addr, reason := range map[string]string{
		"203.0.113.2:25":   RejectSMTP,
		"10.0.0.3:80":      RejectClientToClient,
		"192.168.7.7:80":   RejectNotUplink, // private too, but first: not the uplink
		"192.168.9.9:80":   RejectPrivate(pfx("192.168.0.0/16")),
		"203.0.113.1:80":   RejectExitHost,
		"10.0.0.1:80":      RejectExitHost,
		"203.0.113.2:8081": RejectPolicy(policy.Rules[0]),
		"203.0.113.2:465":  RejectSMTP,
		"203.0.113.2:587":  RejectSMTP,
		// Issue 10: the exit's LAN behind another interface, and a
		// private address inside a NAT64 one.
		"198.51.100.7:80":        RejectNotUplink,
		"[64:ff9b::c0a8:707]:80": RejectPrivate(pfx("64:ff9b::c0a8:0/112")),
	} {
		start := time.Now()
		_, err := l.fetch(t, addr, 2*time.Second)
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("%s (%s): %v, want connection refused", addr, reason, err)
		} else if d := time.Since(start); d > time.Second {
			t.Errorf("%s: refusal took %v", addr, d)
		}
	}
	// UDP gets an ICMP error, which a connected socket reports.
	udp, err := dialIn(t, l.client, "udp", "192.168.7.7:53", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	udp.Write([]byte("query"))
	udp.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err = udp.Read(make([]byte, 64))
	var nerr net.Error
	if err == nil || (errors.As(err, &nerr) && nerr.Timeout()) {
		t.Errorf("UDP to a private address: %v, want an ICMP error", err)
	}
	// The internet may not open connections to clients.
	if _, err := dialIn(t, l.inet, "tcp", "10.0.0.2:7", 300*time.Millisecond); err == nil {
		t.Errorf("the internet reached a client directly")
	}
	// Issue 10: nor may a neighbour on the uplink route through the exit.
	if _, err := dialIn(t, l.inet, "tcp", "198.51.100.7:80", 300*time.Millisecond); err == nil {
		t.Errorf("a neighbour on the uplink routed through the exit to its LAN")
	}

	counts, err := exit.Rejected()
	if err != nil {
		t.Fatal(err)
	}
	for _, reason := range []string{RejectSMTP, RejectClientToClient, RejectPrivate(pfx("192.168.0.0/16")),
		RejectExitHost, RejectPolicy(policy.Rules[0]), DropUnsolicited, RejectNotUplink, DropNotExit,
		RejectPrivate(pfx("64:ff9b::c0a8:0/112"))} {
		if counts[reason].Packets == 0 {
			t.Errorf("counter %q is zero", reason)
		}
	}
	if counts[RejectPrivate(pfx("172.16.0.0/12"))].Packets != 0 {
		t.Errorf("the allowed private range was counted as rejected")
	}

	// The operator replaces the policy.
	if err := exit.SetPolicy(nil); err != nil {
		t.Fatal(err)
	}
	if _, err := l.fetch(t, "203.0.113.2:8081", 2*time.Second); err != nil {
		t.Errorf("port 8081 still refused after the policy was replaced: %v", err)
	}

	if err := exit.Close(); err != nil {
		t.Fatal(err)
	}
	if got := l.sysctls(t); got != sysctlsBefore {
		t.Errorf("sysctls after Close: %q, want %q", got, sysctlsBefore)
	}
	if got := nftRuleset(t, l.exit); got != rulesetBefore {
		t.Errorf("ruleset after Close:\n%s\nwant:\n%s", got, rulesetBefore)
	}
	if got := nftRuleset(t, ""); got != hostBefore {
		t.Errorf("host ruleset changed:\n%s", got)
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("state file left after Close: %v", err)
	}
}

// conntrackSources lists the original-direction source addresses of the
// conntrack entries in ns.
func conntrackSources(t *testing.T, ns string) map[netip.Addr]int {
	t.Helper()
	h, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	nh, err := netlink.NewHandleAt(h, unix.NETLINK_NETFILTER)
	if err != nil {
		t.Fatal(err)
	}
	defer nh.Close()
	out := make(map[netip.Addr]int)
	for _, fam := range []netlink.InetFamily{unix.AF_INET, unix.AF_INET6} {
		flows, err := nh.ConntrackTableList(netlink.ConntrackTable, fam)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range flows {
			if a, ok := netip.AddrFromSlice(f.Forward.SrcIP); ok {
				out[a.Unmap()]++
			}
		}
	}
	return out
}

// Issue 10: a released client address kept its conntrack entries, so the
// next client given the address inherited its predecessor's NAT mappings.
// FlushConntrack removes the entries of the addresses given, and only those.
func TestExitFlushConntrack(t *testing.T) {
	requireNetAdmin(t)
	l := newExitLab(t)
	sink := newUDPSink(t, l.inet, "203.0.113.2:9000")
	var exit *ExitNetworking
	mustInNS(t, l.exit, func() (err error) {
		exit, err = StartExitNetworking(ExitConfig{
			StatePath:      filepath.Join(t.TempDir(), "state.json"),
			TUN:            "nymtun0",
			Uplink:         "x-i",
			ClientPrefixes: []netip.Prefix{pfx("10.0.0.0/16"), pfx("fc00::/112")},
		})
		return err
	})
	t.Cleanup(func() { exit.Close() })
	// A client's flow, and one of the exit host's own.
	to := &net.UDPAddr{IP: net.ParseIP("203.0.113.2"), Port: 9000}
	udpSocketIn(t, l.client).WriteToUDP([]byte("client"), to)
	udpSocketIn(t, l.exit).WriteToUDP([]byte("exit"), to)
	if n := sink.received(2 * time.Second); n != 2 {
		t.Fatalf("%d datagrams reached the internet, want 2", n)
	}
	client, host := netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("203.0.113.1")
	if got := conntrackSources(t, l.exit); got[client] == 0 || got[host] == 0 {
		t.Fatalf("conntrack before the flush: %v, want entries from %v and %v", got, client, host)
	}
	n, err := exit.FlushConntrack(client, netip.MustParseAddr("fc00::2"))
	if err != nil || n != 1 {
		t.Fatalf("FlushConntrack = %d, %v; want 1 entry", n, err)
	}
	if got := conntrackSources(t, l.exit); got[client] != 0 || got[host] == 0 {
		t.Fatalf("conntrack after the flush: %v, want none from %v and the host's kept", got, client)
	}
}
