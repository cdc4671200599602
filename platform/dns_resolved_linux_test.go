package platform

import (
	"context"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"golang.org/x/net/dns/dnsmessage"
)

// resolvedBinary finds systemd-resolved without installing it: installing
// the package would repoint the host's /etc/resolv.conf. Extracted from its
// package it runs all the same (see the skip message).
func resolvedBinary(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("NYM_TEST_SYSTEMD_RESOLVED"), "/lib/systemd/systemd-resolved", "/usr/lib/systemd/systemd-resolved"} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Skip("no systemd-resolved here; to test with one without installing it: " +
		"apt-get download systemd-resolved && dpkg -x systemd-resolved_*.deb DIR, " +
		"then NYM_TEST_SYSTEMD_RESOLVED=DIR/lib/systemd/systemd-resolved")
	return ""
}

// startResolved runs a real systemd-resolved in namespace ns, with a system
// bus of its own (dbus-daemon) in dir, in a private mount namespace whose
// /run is a fresh tmpfs and whose /etc/passwd knows resolved's user: the
// host's /run, /etc and resolver stay as they are. Its global DNS server is
// global. It returns the bus address.
func startResolved(t *testing.T, ns, dir string, global netip.Addr) string {
	t.Helper()
	bin := resolvedBinary(t)
	for _, c := range []string{"dbus-daemon", "unshare"} {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("testing with systemd-resolved needs %s: %v", c, err)
		}
	}
	// resolved runs as its own user, which must reach the bus socket.
	for d := dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	const uid = "64153" // resolved's user here, unknown to the host
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bus := filepath.Join(dir, "bus")
	write("bus.conf", `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN" "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=`+bus+`</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
`)
	passwd, err := os.ReadFile("/etc/passwd")
	if err != nil {
		t.Fatal(err)
	}
	group, err := os.ReadFile("/etc/group")
	if err != nil {
		t.Fatal(err)
	}
	write("passwd", string(passwd)+"systemd-resolve:x:"+uid+":"+uid+"::/:/usr/sbin/nologin\n")
	write("group", string(group)+"systemd-resolve:x:"+uid+":\n")
	script := write("run.sh", `set -e
mount --make-rprivate /
mount -t tmpfs tmpfs /run
mkdir -p /run/systemd/resolve /run/systemd/resolved.conf.d
chown `+uid+`:`+uid+` /run/systemd/resolve
printf '[Resolve]\nDNS=`+global.String()+`\nLLMNR=no\nMulticastDNS=no\nDNSSEC=no\nDNSStubListener=yes\n' >/run/systemd/resolved.conf.d/test.conf
mount --bind `+dir+`/passwd /etc/passwd
mount --bind `+dir+`/group /etc/group
dbus-daemon --config-file=`+dir+`/bus.conf --nofork --nopidfile &
while [ ! -S `+bus+` ]; do sleep 0.05; done
export DBUS_SYSTEM_BUS_ADDRESS=unix:path=`+bus+`
exec `+bin+`
`)
	logf, err := os.Create(filepath.Join(dir, "resolved.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", ns, "unshare", "-m", "sh", script)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // resolved and its bus, stopped together
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(exited) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "resolved.log"))
			t.Logf("resolved's log:\n%s", b)
		}
	})
	addr := "unix:path=" + bus
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", addr)
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		if onBus() {
			return addr
		}
		select {
		case <-exited:
			b, _ := os.ReadFile(filepath.Join(dir, "resolved.log"))
			t.Fatalf("systemd-resolved exited:\n%s", b)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("systemd-resolved did not come onto its bus within a minute")
		}
	}
}

func onBus() bool {
	conn, err := dbus.ConnectSystemBus()
	if err != nil {
		return false
	}
	defer conn.Close()
	var has bool
	err = conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, resolvedName).Store(&has)
	return err == nil && has
}

// dnsServer answers every A query on conn with answer, and reports the
// names asked.
func dnsServer(t *testing.T, conn net.PacketConn, answer netip.Addr) <-chan string {
	asked := make(chan string, 64)
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			var p dnsmessage.Parser
			h, err := p.Start(buf[:n])
			if err != nil {
				continue
			}
			q, err := p.Question()
			if err != nil {
				continue
			}
			select {
			case asked <- q.Name.String():
			default:
			}
			b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionAvailable: true})
			b.StartQuestions()
			b.Question(q)
			b.StartAnswers()
			if q.Type == dnsmessage.TypeA {
				b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 1}, dnsmessage.AResource{A: answer.As4()})
			}
			msg, err := b.Finish()
			if err == nil {
				conn.WriteTo(msg, from)
			}
		}
	})
	t.Cleanup(func() { conn.Close(); wg.Wait() })
	return asked
}

// lookupStub asks resolved's stub for name's A record from namespace ns.
func lookupStub(t *testing.T, ns, name string, timeout time.Duration) (netip.Addr, error) {
	t.Helper()
	var r net.Resolver
	r.PreferGo = true
	r.Dial = func(ctx context.Context, network, address string) (net.Conn, error) {
		var c net.Conn
		err := inNS(t, ns, func() error {
			var err error
			c, err = net.Dial("udp", "127.0.0.53:53")
			return err
		})
		return c, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	addrs, err := r.LookupNetIP(ctx, "ip4", name)
	if err != nil || len(addrs) == 0 {
		return netip.Addr{}, err
	}
	return addrs[0], nil
}

// TestDNSThroughSystemdResolved: with a real systemd-resolved managing DNS
// (the resolver file names its stub), ApplyDNS sets the tunnel's link in
// resolved instead of writing the file; names resolve through the tunnel's
// server; no query leaves by the uplink, though the uplink has a default
// route and resolved a global server out of it (nft counter, proven able
// to count first); Restore, and the restore of a crashed run's state,
// revert the link.
func TestDNSThroughSystemdResolved(t *testing.T) {
	requireNetAdmin(t)
	client, far := newNS(t, "rc"), newNS(t, "rf")
	vethPair(t, client, "up0", far, "upp")
	vethPair(t, client, "nvt0", far, "nvtp")
	ipNS(t, client, "addr", "add", "192.0.2.2/24", "dev", "up0")
	ipNS(t, client, "route", "add", "default", "via", "192.0.2.1")
	ipNS(t, far, "addr", "add", "192.0.2.1/24", "dev", "upp")
	ipNS(t, client, "addr", "add", "10.9.0.1/24", "dev", "nvt0")
	ipNS(t, far, "addr", "add", "10.9.0.2/24", "dev", "nvtp")
	nft := exec.Command("ip", "netns", "exec", client, "nft", "-f", "-")
	nft.Stdin = strings.NewReader(`table inet dnsleak {
	counter dns { }
	chain post {
		type filter hook postrouting priority 500; policy accept;
		oifname "up0" meta l4proto { tcp, udp } th dport { 53, 853, 5353, 5355 } counter name dns
	}
}
`)
	if out, err := nft.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v %s", err, out)
	}
	leaked := func() int {
		out := sh(t, "ip", "netns", "exec", client, "nft", "list", "counter", "inet", "dnsleak", "dns")
		m := regexp.MustCompile(`packets (\d+)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no counter in %q", out)
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	resetLeaks := func() { sh(t, "ip", "netns", "exec", client, "nft", "reset", "counter", "inet", "dnsleak", "dns") }

	// Two servers, told apart by their answers: the tunnel's, and the
	// uplink's (resolved's global server, out of the default route).
	ipNS(t, far, "addr", "add", "198.51.100.53/32", "dev", "upp")
	var tunnelDNS, uplinkDNS net.PacketConn
	mustInNS(t, far, func() error {
		var err error
		if tunnelDNS, err = net.ListenPacket("udp", "10.9.0.2:53"); err != nil {
			return err
		}
		uplinkDNS, err = net.ListenPacket("udp", "198.51.100.53:53")
		return err
	})
	answer, uplinkAnswer := netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("198.51.100.99")
	asked := dnsServer(t, tunnelDNS, answer)
	dnsServer(t, uplinkDNS, uplinkAnswer)
	viaUplink := func(what, name string) {
		t.Helper()
		resetLeaks()
		got, err := lookupStub(t, client, name, 30*time.Second)
		if err != nil || got != uplinkAnswer {
			t.Fatalf("%s: %s resolved to %v (%v); want %s from the uplink's server", what, name, got, err, uplinkAnswer)
		}
		if leaked() == 0 {
			t.Fatalf("%s: the query to the uplink's server was not counted", what)
		}
	}

	dir := t.TempDir()
	startResolved(t, client, dir, netip.MustParseAddr("198.51.100.53"))
	resolvConf := filepath.Join(dir, "resolv.conf")
	stub := "# This is /run/systemd/resolve/stub-resolv.conf\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n"
	if err := os.WriteFile(resolvConf, []byte(stub), 0o644); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(t.TempDir(), "state", "state.json")

	// Before: resolved asks its global server, out of the uplink, and
	// the counter counts it.
	viaUplink("before ApplyDNS", "before.example")

	apply := func() *DNS {
		t.Helper()
		var d *DNS
		mustInNS(t, client, func() error {
			var err error
			d, err = ApplyDNS(DNSConfig{StatePath: state, ResolvConf: resolvConf, Servers: []netip.Addr{netip.MustParseAddr("10.9.0.2")}, Link: "nvt0"})
			return err
		})
		if d.resolved == nil {
			t.Fatalf("ApplyDNS replaced the resolver file though resolved manages DNS")
		}
		if b := readFile(t, resolvConf); string(b) != stub {
			t.Errorf("the resolver file changed: %q", b)
		}
		return d
	}
	through := func(name string) {
		t.Helper()
		resetLeaks()
		got, err := lookupStub(t, client, name, 30*time.Second)
		if err != nil || got != answer {
			t.Fatalf("%s through resolved: %v %v; want %s from the tunnel's server", name, got, err, answer)
		}
		if n := leaked(); n != 0 {
			t.Errorf("%d DNS packets left by the uplink while resolving %s", n, name)
		}
	}
	reverted := func(what string) {
		t.Helper()
		// No link routes names any more: the global server, out of
		// the uplink, gets them again.
		viaUplink(what, "after-"+strconv.Itoa(len(what))+".example")
		st, err := loadState(state)
		if err != nil || len(st.DNS) != 0 {
			t.Errorf("%s: state %+v %v; want no DNS record", what, st, err)
		}
	}

	d := apply()
	st, err := loadState(state)
	if err != nil || len(st.DNS) != 1 || st.DNS[0].Kind != dnsResolved || st.DNS[0].Link != "nvt0" {
		t.Fatalf("state while connected: %+v %v", st, err)
	}
	through("tunnel.example")
	select {
	case n := <-asked:
		if n != "tunnel.example." {
			t.Errorf("the tunnel's server was asked %s", n)
		}
	default:
		t.Error("the tunnel's server saw no query")
	}
	mustInNS(t, client, d.Restore)
	reverted("after Restore")

	// A crashed run: its state is restored by the next start.
	apply()
	through("again.example")
	mustInNS(t, client, func() error { return Restore(state) })
	reverted("after restoring a crashed run's state")
}

func TestNamesOnlyStubs(t *testing.T) {
	for conf, want := range map[string]bool{
		"nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n": true,
		"# resolved's\nnameserver 127.0.0.54\n":                     true,
		"nameserver 127.0.0.53\nnameserver 192.0.2.1\n":             false, // a real server beside the stub: read directly
		"nameserver 192.0.2.1\n":                                    false,
		"search lan\n":                                              false,
		"nameserver nonsense\n":                                     false,
	} {
		if got := namesOnlyStubs([]byte(conf)); got != want {
			t.Errorf("namesOnlyStubs(%q) = %v, want %v", conf, got, want)
		}
	}
}

// A resolved record names a link, never a file: anything else in a state
// file is refused.
func TestResolvedRecordValidation(t *testing.T) {
	for _, r := range []dnsRecord{
		{Kind: dnsResolved, Link: "nymvpn0", Index: 0},
		{Kind: dnsResolved, Link: "", Index: 3},
		{Kind: dnsResolved, Link: "a/b", Index: 3},
		{Kind: dnsResolved, Link: "nymvpn0", Index: 3, Path: DefaultResolvConf},
	} {
		if err := r.validate(); err == nil {
			t.Errorf("%+v accepted", r)
		}
	}
	if err := (dnsRecord{Kind: dnsResolved, Link: "nymvpn0", Index: 3}).validate(); err != nil {
		t.Errorf("a good record refused: %v", err)
	}
}
