package main

// End-to-end test of `nymvpn socks5` through the local network: root only
// (to build the network), not with -short; the proxy itself runs as nobody.

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/nym-go/nym/internal/netnstest"
)

const (
	socksAddr = "127.0.0.1:1080"
	// socksDecoyDNS is where the client namespace's resolv.conf points while
	// the proxy runs: an address on the LAN with no resolver, whose queries
	// an nft counter of the test's own catches on their way out.
	socksDecoyDNS = "192.0.2.53"
)

// TestSOCKSRootless: the SOCKS proxy, run unprivileged in the client
// namespace, fetches pages by name (SOCKS5 and SOCKS4a, names only the
// internet's resolver knows) and by address (SOCKS4), the server seeing the
// exit's address; answers DNS over SOCKS5 UDP ASSOCIATE; never asks the
// host's resolver; refuses a bad request with the right reply and keeps
// serving.
func TestSOCKSRootless(t *testing.T) {
	if !testing.Short() && os.Geteuid() == 0 {
		for _, c := range []string{"setpriv", "getent"} {
			if _, err := exec.LookPath(c); err != nil {
				t.Skipf("needs %s: %v", c, err)
			}
		}
	}
	n := upNet(t, 1)
	client := n.ns("client")

	// The host's resolver, as seen from the client namespace, becomes a
	// decoy on the LAN; every packet to port 53 leaving the namespace is
	// counted (on the LAN interface, and on any interface).
	resolv := "/etc/netns/" + client + "/resolv.conf"
	if err := os.WriteFile(resolv, []byte("nameserver "+socksDecoyDNS+"\noptions timeout:1 attempts:1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ruleset := `table inet socks_e2e_dns {
	counter lan53 {}
	counter any53 {}
	chain out {
		type filter hook output priority -300; policy accept;
		oifname "lan0" meta l4proto { tcp, udp } th dport 53 counter name "lan53"
		meta l4proto { tcp, udp } th dport 53 counter name "any53"
	}
}
`
	rf := filepath.Join(n.state, "socks-e2e-dns.nft")
	if err := os.WriteFile(rf, []byte(ruleset), 0o644); err != nil {
		t.Fatal(err)
	}
	n.must("client", "nft", "-f", rf)
	counter := func(name string) int {
		t.Helper()
		out := n.must("client", "nft", "list", "counter", "inet", "socks_e2e_dns", name)
		m := regexp.MustCompile(`packets (\d+)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("counter %s: %s", name, out)
		}
		v, _ := strconv.Atoi(m[1])
		return v
	}

	// The binary, where nobody can execute it (t.TempDir is root's only).
	binDir, err := os.MkdirTemp("", "socks-e2e-bin")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(binDir) })
	if err := os.Chmod(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(n.bin, "nymvpn"))
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(binDir, "nymvpn")
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	// And the network file, where nobody can read it.
	netFile := filepath.Join(binDir, "network.toml")
	if b, err = os.ReadFile(filepath.Join(n.state, "network.toml")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(netFile, b, 0o644); err != nil {
		t.Fatal(err)
	}

	// The gateways require tickets: a ticketbook of the proxy's user, in
	// a directory of its own (a spend rewrites the book).
	var ticketArgs []string
	if len(n.vouchers) > 0 {
		bookDir := filepath.Join(binDir, "book")
		book := filepath.Join(bookDir, "tickets.book")
		if err := os.Mkdir(bookDir, 0o700); err != nil {
			t.Fatal(err)
		}
		if out, err := n.vpn("tickets", "--book", book, "add", n.vouchers[0], "--network", netFile); err != nil {
			t.Fatalf("nymvpn tickets add: %v\n%s", err, out)
		}
		for _, p := range []string{bookDir, book} {
			if err := os.Chown(p, 65534, 65534); err != nil {
				t.Fatal(err)
			}
		}
		ticketArgs = []string{"--tickets", book}
	}

	n.vpnLog = filepath.Join(n.state, "log", "nymvpn-socks.log")
	n.startBackground("client", "nymvpn-socks", n.vpnLog, append([]string{
		"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		bin, "socks5", "--listen", socksAddr, "--network", netFile,
		"--dns", e2eInet4, "--log-level", "debug"}, ticketArgs...)...)
	pidb, err := os.ReadFile(filepath.Join(n.state, "pids", "nymvpn-socks"))
	if err != nil {
		t.Fatal(err)
	}
	pid := strings.Fields(string(pidb))[0]

	fetch := func(args ...string) (string, error) {
		return n.in("client", 3*time.Minute, append([]string{"curl", "-sf", "--max-time", "150"}, args...)...)
	}
	sawExit := "hello from the internet; you are " + e2eExit4 + ":"
	// A guard against a hang: at Nym's default rates under load 15 the
	// first page took over two minutes.
	deadline := time.Now().Add(5 * time.Minute)
	for {
		out, err := fetch("--socks5-hostname", socksAddr, "http://internet.test/")
		if err == nil && strings.Contains(out, sawExit) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no page through the SOCKS proxy 5 min after it started: %v %s", err, out)
		}
		time.Sleep(time.Second)
	}
	status, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^Uid:\s+65534\s+65534\s+65534\s+65534$`).Match(status) {
		t.Errorf("the proxy (pid %s) does not run as nobody:\n%s", pid, status)
	}

	for _, tc := range []struct{ what, flag, url string }{
		{"SOCKS5, name resolved by the proxy", "--socks5-hostname", "http://internet.test/"},
		{"SOCKS4a, name resolved by the proxy", "--socks4a", "http://internet.test/"},
		{"SOCKS4, by address", "--socks4", "http://" + e2eInet4 + "/"},
	} {
		out, err := fetch(tc.flag, socksAddr, tc.url)
		if err != nil || !strings.Contains(out, sawExit) {
			t.Errorf("%s: curl %s %s: %v %q; want %q", tc.what, tc.flag, tc.url, err, out, sawExit)
		} else {
			t.Logf("%s: ok", tc.what)
		}
	}

	// DNS over SOCKS5 UDP ASSOCIATE, from inside the client namespace.
	if addr, err := socksUDPDNS(client, "internet.test."); err != nil {
		t.Errorf("DNS over UDP ASSOCIATE: %v", err)
	} else if addr != netip.MustParseAddr(e2eInet4) {
		t.Errorf("DNS over UDP ASSOCIATE: internet.test is %v, want %s", addr, e2eInet4)
	} else {
		t.Logf("DNS over UDP ASSOCIATE: internet.test is %v", addr)
	}

	// A CONNECT with an unknown address type (0x09), sent raw.
	if rep, err := socksRaw(client, []byte{5, 1, 0, 9, 127, 0, 0, 1, 0, 80}); err != nil {
		t.Errorf("bad request: %v", err)
	} else if len(rep) < 2 || rep[0] != 5 || rep[1] != 0x08 {
		t.Errorf("bad request (address type 0x09): reply % x, want 05 08 (address type not supported)", rep)
	} else {
		t.Logf("bad request: reply % x", rep)
	}
	if out, err := fetch("--socks5-hostname", socksAddr, "http://internet.test/"); err != nil || !strings.Contains(out, sawExit) {
		t.Errorf("after the bad request: %v %q", err, out)
	}

	// A destination the exit's policy refuses (SMTP): the exit's notice
	// becomes "not allowed by ruleset" at once, not a timeout.
	start := time.Now()
	if rep, err := socksRaw(client, []byte{5, 1, 0, 1, 198, 51, 100, 2, 0, 25}); err != nil {
		t.Errorf("policy refusal: %v", err)
	} else if len(rep) < 2 || rep[1] != 0x02 {
		t.Errorf("CONNECT to %s:25: reply % x after %v, want 05 02 (not allowed by ruleset)", e2eInet4, rep, time.Since(start))
	} else {
		t.Logf("policy refusal: reply % x after %v", rep, time.Since(start).Round(time.Millisecond))
	}

	if lan, any := counter("lan53"), counter("any53"); lan != 0 || any != 0 {
		t.Errorf("the client namespace sent %d packets to port 53 on its LAN (%d on any interface); the proxy must resolve through the tunnel only", lan, any)
	}
	// The counter does catch the host's resolver.
	n.in("client", 15*time.Second, "getent", "hosts", "internet.test")
	if got := counter("lan53"); got == 0 {
		t.Errorf("control: getent hosts in the client namespace sent nothing the counter saw")
	}
}

// inNetns runs f on a thread in the named namespace; sockets f opens stay
// there. The thread goes back to the test's namespace afterwards: left in
// the client's (the main thread cannot die with its goroutine), it would put
// the test process on the list of processes localnet.sh down kills there.
func inNetns(name string, f func() error) error {
	return netnstest.DoNamed(name, f)
}

// socks5Greet dials the proxy in namespace ns and negotiates no auth.
func socks5Greet(ns string) (net.Conn, error) {
	var c net.Conn
	err := inNetns(ns, func() (err error) {
		c, err = net.DialTimeout("tcp", socksAddr, 5*time.Second)
		return err
	})
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := c.Write([]byte{5, 1, 0}); err != nil {
		c.Close()
		return nil, err
	}
	var m [2]byte
	if _, err := io.ReadFull(c, m[:]); err != nil || m != [2]byte{5, 0} {
		c.Close()
		return nil, fmt.Errorf("method selection: % x, %v", m, err)
	}
	return c, nil
}

// socksRaw sends one raw SOCKS5 request after the greeting and returns what
// the proxy replies before closing.
func socksRaw(ns string, req []byte) ([]byte, error) {
	c, err := socks5Greet(ns)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if _, err := c.Write(req); err != nil {
		return nil, err
	}
	rep, err := io.ReadAll(c)
	if len(rep) >= 2 {
		return rep, nil
	}
	return rep, fmt.Errorf("short reply % x: %v", rep, err)
}

// socksUDPDNS asks the internet's resolver for name's A record through a
// SOCKS5 UDP association.
func socksUDPDNS(ns, name string) (netip.Addr, error) {
	var none netip.Addr
	c, err := socks5Greet(ns)
	if err != nil {
		return none, err
	}
	defer c.Close()
	if _, err := c.Write([]byte{5, 3, 0, 1, 0, 0, 0, 0, 0, 0}); err != nil {
		return none, err
	}
	var h [4]byte
	if _, err := io.ReadFull(c, h[:]); err != nil {
		return none, err
	}
	if h[0] != 5 || h[1] != 0 {
		return none, fmt.Errorf("UDP ASSOCIATE refused: % x", h)
	}
	var relay netip.AddrPort
	switch h[3] {
	case 1, 4:
		ab := make([]byte, map[byte]int{1: 4, 4: 16}[h[3]]+2)
		if _, err := io.ReadFull(c, ab); err != nil {
			return none, err
		}
		a, _ := netip.AddrFromSlice(ab[:len(ab)-2])
		relay = netip.AddrPortFrom(a.Unmap(), binary.BigEndian.Uint16(ab[len(ab)-2:]))
	default:
		return none, fmt.Errorf("UDP ASSOCIATE: bound address type %d", h[3])
	}
	if relay.Addr().IsUnspecified() {
		relay = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), relay.Port())
	}

	var pc *net.UDPConn
	if err := inNetns(ns, func() (err error) {
		pc, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		return err
	}); err != nil {
		return none, err
	}
	defer pc.Close()

	bld := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 0x5eed, RecursionDesired: true})
	bld.StartQuestions()
	if err := bld.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}); err != nil {
		return none, err
	}
	q, err := bld.Finish()
	if err != nil {
		return none, err
	}
	dst := netip.MustParseAddr(e2eInet4).As4()
	dgram := append([]byte{0, 0, 0, 1}, dst[:]...)
	dgram = append(dgram, 0, 53)
	dgram = append(dgram, q...)

	buf := make([]byte, 2048)
	var lastErr error
	for try := 0; try < 6; try++ {
		if _, err := pc.WriteToUDPAddrPort(dgram, relay); err != nil {
			return none, err
		}
		pc.SetReadDeadline(time.Now().Add(10 * time.Second))
		k, _, err := pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			lastErr = err
			continue
		}
		d := buf[:k]
		if len(d) < 10 || d[2] != 0 || d[3] != 1 || netip.AddrFrom4([4]byte(d[4:8])) != netip.AddrFrom4(dst) || binary.BigEndian.Uint16(d[8:10]) != 53 {
			return none, fmt.Errorf("datagram header % x, want from %s:53", d[:min(len(d), 10)], e2eInet4)
		}
		var p dnsmessage.Parser
		hdr, err := p.Start(d[10:])
		if err != nil {
			return none, err
		}
		if hdr.ID != 0x5eed || !hdr.Response || hdr.RCode != dnsmessage.RCodeSuccess {
			return none, fmt.Errorf("DNS answer header %+v", hdr)
		}
		if err := p.SkipAllQuestions(); err != nil {
			return none, err
		}
		ans, err := p.AllAnswers()
		if err != nil {
			return none, err
		}
		for _, a := range ans {
			if r, ok := a.Body.(*dnsmessage.AResource); ok {
				return netip.AddrFrom4(r.A), nil
			}
		}
		return none, fmt.Errorf("no A record in %d answers", len(ans))
	}
	return none, fmt.Errorf("no answer after 6 tries: %v", lastErr)
}
