package wggate

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
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

	"golang.org/x/crypto/curve25519"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	wgtun "golang.zx2c4.com/wireguard/tun"

	"github.com/nym-go/nym/internal/netnstest"
	"github.com/nym-go/nym/internal/poll"
	"github.com/nym-go/nym/internal/testpkt"
	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/platform"
	"github.com/nym-go/nym/tun/ippkt"
	"github.com/nym-go/nym/wgreg"
)

// needRoot skips a test that needs root, a TUN device and iproute2 and nft.
func needRoot(t *testing.T) { t.Helper(); netnstest.NeedRoot(t, "nft") }

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// newNS creates the namespace name and deletes it when the test ends, which
// removes every link, TUN and nftables table inside.
func newNS(t *testing.T, name string) {
	t.Helper()
	_ = exec.Command("ip", "netns", "del", name).Run()
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	run(t, "ip", "-n", name, "link", "set", "lo", "up")
}

// inNS returns a func that runs fn in namespace ns.
func inNS(t *testing.T, ns string, fn func() error) {
	t.Helper()
	if err := netnstest.DoNamed(ns, fn); err != nil {
		t.Fatal(err)
	}
}

func dialerIn(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (c net.Conn, err error) {
		if nerr := netnstest.DoNamed(ns, func() error {
			var d net.Dialer
			c, err = d.DialContext(ctx, network, addr)
			return nil
		}); nerr != nil {
			return nil, nerr
		}
		return c, err
	}
}

// fastNet is the test's network: client — entry — exit — internet, each in
// a namespace, only documentation addresses, no route out of it.
type fastNet struct {
	c, e, x, i string
}

func newFastNet(t *testing.T) *fastNet {
	var sfx [3]byte
	rand.Read(sfx[:])
	p := "fg" + hex.EncodeToString(sfx[:])
	n := &fastNet{c: p + "c", e: p + "e", x: p + "x", i: p + "i"}
	for _, ns := range []string{n.c, n.e, n.x, n.i} {
		newNS(t, ns)
	}
	link := func(ns1, if1, addr1, ns2, if2, addr2 string) {
		run(t, "ip", "-n", ns1, "link", "add", if1, "type", "veth", "peer", "name", if2, "netns", ns2)
		for _, s := range [][3]string{{ns1, if1, addr1}, {ns2, if2, addr2}} {
			// No IPv6 link chatter: the capture on the entry's LAN side
			// counts every packet.
			run(t, "ip", "netns", "exec", s[0], "sysctl", "-qw", "net.ipv6.conf."+s[1]+".disable_ipv6=1")
			run(t, "ip", "-n", s[0], "addr", "add", s[2], "dev", s[1])
			run(t, "ip", "-n", s[0], "link", "set", s[1], "up")
		}
	}
	link(n.c, "c0", "192.0.2.100/24", n.e, "e0", "192.0.2.20/24")
	link(n.e, "e1", "203.0.113.1/24", n.x, "x0", "203.0.113.2/24")
	run(t, "ip", "-n", n.x, "link", "add", "x1", "type", "veth", "peer", "name", "i0", "netns", n.i)
	for _, s := range [][4]string{{n.x, "x1", "198.51.100.1/24", "2001:db8:1::1/64"}, {n.i, "i0", "198.51.100.2/24", "2001:db8:1::2/64"}} {
		run(t, "ip", "-n", s[0], "addr", "add", s[2], "dev", s[1])
		run(t, "ip", "-n", s[0], "-6", "addr", "add", s[3], "dev", s[1], "nodad")
		run(t, "ip", "-n", s[0], "link", "set", s[1], "up")
	}
	run(t, "ip", "-n", n.x, "route", "add", "default", "via", "198.51.100.2")
	run(t, "ip", "-n", n.x, "-6", "route", "add", "default", "via", "2001:db8:1::2")
	return n
}

// testClient is a fast-mode client made of two nested wireguard-go devices.
type testClient struct {
	outer, inner *device.Device
	outerTUN     *chanTUN
	outerAddr    netip.Addr
}

func newKey() (priv, pub [32]byte) {
	rand.Read(priv[:])
	p, _ := curve25519.X25519(priv[:], curve25519.Basepoint)
	return priv, [32]byte(p)
}

func startClient(t *testing.T, ns, tunName string, outerPriv, innerPriv [32]byte, entry, exit wgreg.Registration) *testClient {
	t.Helper()
	c := &testClient{outerAddr: entry.AddrV4.Addr()}
	nb := &nestBind{src: netip.AddrPortFrom(c.outerAddr, 51000)}
	c.outerTUN = newChanTUN(DefaultEntryMTU, 1024, func(bufs [][]byte, offset int) {
		for _, b := range bufs {
			nb.fromOuter(b[offset:])
		}
	})
	nb.outer = c.outerTUN
	log := wgLogger(testLogger().With("dev", "client"))
	inNS(t, ns, func() error {
		c.outer = device.NewDevice(c.outerTUN, conn.NewStdNetBind(), log)
		if err := c.outer.IpcSet(privateConfig(outerPriv) + peerConfig(entry.GatewayKey, entry.PSK, entry.Endpoint, "0.0.0.0/0")); err != nil {
			return err
		}
		if err := c.outer.Up(); err != nil {
			return err
		}
		ktun, err := wgtun.CreateTUN(tunName, DefaultExitMTU)
		if err != nil {
			return err
		}
		c.inner = device.NewDevice(ktun, nb, log)
		if err := c.inner.IpcSet(privateConfig(innerPriv) + peerConfig(exit.GatewayKey, exit.PSK, exit.Endpoint, "0.0.0.0/0", "::/0")); err != nil {
			return err
		}
		return c.inner.Up()
	})
	t.Cleanup(func() { c.inner.Close(); c.outer.Close() })
	run(t, "ip", "-n", ns, "addr", "add", exit.AddrV4.String(), "dev", tunName)
	run(t, "ip", "-n", ns, "-6", "addr", "add", exit.AddrV6.String(), "dev", tunName, "nodad")
	run(t, "ip", "-n", ns, "link", "set", tunName, "up")
	for _, dst := range []string{"198.51.100.0/24", "10.0.0.0/8", "203.0.113.2/32"} {
		run(t, "ip", "-n", ns, "route", "add", dst, "dev", tunName)
	}
	run(t, "ip", "-n", ns, "-6", "route", "add", "2001:db8:1::/64", "dev", tunName)
	return c
}

// serveInternet runs the internet's server: on connect it says who called
// and sends 1 MiB.
func serveInternet(t *testing.T, ns string, addrs ...string) []byte {
	t.Helper()
	blob := make([]byte, 1<<20)
	rand.Read(blob)
	for _, a := range addrs {
		var ln net.Listener
		inNS(t, ns, func() (err error) { ln, err = net.Listen("tcp", a); return err })
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
					fmt.Fprintf(c, "%-64s\n", host)
					c.Write(blob)
				}()
			}
		}()
	}
	return blob
}

// fetch connects from the client's namespace and returns who the server
// saw and what it sent.
func fetch(t *testing.T, dial func(ctx context.Context, network, addr string) (net.Conn, error), addr string) (string, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := dial(ctx, "tcp", addr)
	if err != nil {
		t.Fatalf("connecting to %s through the tunnels: %v", addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading from %s: %v", addr, err)
	}
	if len(b) < 65 {
		t.Fatalf("short answer from %s: %q", addr, b)
	}
	return strings.TrimSpace(string(b[:64])), b[65:]
}

// nftCounters reads a table's named counters at one instant.
func nftCounters(t *testing.T, ns, table string) map[string]uint64 {
	out := run(t, "ip", "netns", "exec", ns, "nft", "list", "counters", "table", "inet", table)
	got := make(map[string]uint64)
	for _, m := range regexp.MustCompile(`counter (\w+) \{\s*packets (\d+)`).FindAllStringSubmatch(out, -1) {
		got[m[1]], _ = strconv.ParseUint(m[2], 10, 64)
	}
	return got
}

// TestFastModeThroughGateways registers a client with an entry and, through
// it, with an exit, over real links with real ML-KEM, then passes traffic
// through nested WireGuard to a server behind the exit, and checks what the
// entry forwards and what the exit's policy refuses.
func TestFastModeThroughGateways(t *testing.T) {
	needRoot(t)
	n := newFastNet(t)
	entryK, exitK := newTestKeys(t), newTestKeys(t)
	entryEP, exitEP := netip.MustParseAddrPort("192.0.2.20:51820"), netip.MustParseAddrPort("203.0.113.2:51821")
	topo := &directory.Topology{Rotation: testRotation,
		Entry: []directory.Node{entryK.node(entryEP)}, Exit: []directory.Node{exitK.node(exitEP)}}

	var entry, exit *Gateway
	inNS(t, n.e, func() (err error) {
		cfg := entryK.config(wgreg.RoleEntry, entryEP)
		cfg.DialContext = dialerIn(n.e)
		cfg.DialUDP = func(ep netip.AddrPort) (c *net.UDPConn, err error) {
			netnstest.DoNamed(n.e, func() error { c, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(ep)); return nil })
			return c, err
		}
		entry, err = New(cfg)
		return err
	})
	t.Cleanup(func() { entry.Close() })
	inNS(t, n.x, func() (err error) {
		cfg := exitK.config(wgreg.RoleExit, exitEP)
		cfg.FlushConntrack = func(addrs ...netip.Addr) (flushed int, err error) {
			netnstest.DoNamed(n.x, func() error { flushed, err = platform.FlushConntrack(addrs...); return nil })
			return flushed, err
		}
		exit, err = New(cfg)
		return err
	})
	t.Cleanup(func() { exit.Close() })
	entry.Update(topo)
	exit.Update(topo)

	// The exit's WireGuard TUN under the exit networking, beside a router
	// TUN (not created here: its rules match by name).
	var exitNet *platform.ExitNetworking
	inNS(t, n.x, func() (err error) {
		exitNet, err = platform.StartExitNetworking(platform.ExitConfig{
			StatePath:      filepath.Join(t.TempDir(), "state.json"),
			TUN:            "nymtun0",
			ExtraTUNs:      []string{DefaultExitTUN},
			Uplink:         "x1",
			ClientPrefixes: []netip.Prefix{DefaultExitRangeV4, DefaultExitRangeV6},
		})
		return err
	})
	t.Cleanup(func() { exitNet.Close() })
	blob := serveInternet(t, n.i, "198.51.100.2:8080", "[2001:db8:1::2]:8080", "198.51.100.2:25")

	// Register: directly with the entry, relayed to the exit.
	ctx := context.Background()
	outerPriv, outerPub := newKey()
	innerPriv, innerPub := newKey()
	opts := wgreg.Options{Rotation: testRotation, DialContext: dialerIn(n.c), Logger: testLogger()}
	ereg, sess, err := wgreg.RegisterEntry(ctx, topo.Entry[0], outerPub, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	xreg, err := sess.RegisterExit(ctx, topo.Exit[0], innerPub)
	if err != nil {
		t.Fatal(err)
	}
	if xreg.GatewayKey != exit.PublicKey() || xreg.AddrV4 != netip.MustParsePrefix("10.1.0.2/32") || xreg.Endpoint != exitEP {
		t.Fatalf("exit registration %+v", xreg)
	}
	_, otherPub := newKey()
	other, err := sess.RegisterExit(ctx, topo.Exit[0], otherPub)
	if err != nil {
		t.Fatal(err)
	}

	// A replayed relay is refused by the exit; the exit refuses direct
	// registrations and forwards from anyone but a gateway.
	t.Run("replay through the relay", func(t *testing.T) {
		req := &wgreg.Request{WGKey: otherPub, Time: time.Now()}
		rand.Read(req.Nonce[:])
		node := topo.Exit[0]
		sealed, p, err := wgreg.SealRequest(&node, testRotation, wgreg.RoleExit, req)
		if err != nil {
			t.Fatal(err)
		}
		msg, _ := (&wgreg.Relay{ID: 9, Exit: node.Identity, Sealed: sealed}).AppendBinary(nil)
		r := dialRawWith(t, topo.Entry[0], dialerIn(n.c))
		if a := answerOf(t, r.send(t, msg), p); a.Status != wgreg.AnswerOK {
			t.Fatalf("first relay: %+v", a)
		}
		if a := answerOf(t, r.send(t, msg), p); a.Status != wgreg.AnswerRefused || !strings.Contains(a.Text, "replayed") {
			t.Fatalf("replayed relay: %+v", a)
		}
		direct := dialRawWith(t, topo.Exit[0], dialerIn(n.e))
		reg, _ := (&wgreg.Register{ID: 1, Sealed: sealed}).AppendBinary(nil)
		if m, ok := direct.send(t, reg).(*wgreg.Error); !ok || m.Code != wgreg.ErrCodeRefused {
			t.Fatalf("direct registration at the exit: %#v", m)
		}
		fwd, _ := (&wgreg.Forward{ID: 2, Sealed: sealed}).AppendBinary(nil)
		if m, ok := direct.send(t, fwd).(*wgreg.Error); !ok || m.Code != wgreg.ErrCodeRefused {
			t.Fatalf("forward from a stranger at the exit: %#v", m)
		}
	})

	// Garbage on the exit's WireGuard port first: it keeps serving.
	inNS(t, n.e, func() error {
		u, err := net.Dial("udp", exitEP.String())
		if err != nil {
			return err
		}
		defer u.Close()
		for _, size := range []int{1, 148, 1000} {
			junk := make([]byte, size)
			rand.Read(junk)
			junk[0] = 1
			u.Write(junk)
		}
		return nil
	})

	// Count every IPv4/IPv6 packet the entry sends towards the exit, and
	// those that are UDP to the exit's WireGuard port, from now on.
	capture := `table inet fgcap {
	counter sent {}
	counter udp_exit {}
	chain out {
		type filter hook postrouting priority 0; policy accept;
		oifname "e1" counter name sent
		oifname "e1" ip daddr 203.0.113.2 udp dport 51821 counter name udp_exit
	}
}`
	cmd := exec.Command("ip", "netns", "exec", n.e, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(capture)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}

	client := startClient(t, n.c, "wgc0", outerPriv, innerPriv, ereg, xreg)
	clientDial := dialerIn(n.c)

	t.Run("IPv4 1 MiB", func(t *testing.T) {
		start := time.Now()
		who, got := fetch(t, clientDial, "198.51.100.2:8080")
		t.Logf("1 MiB through the nested tunnels in %v (connect included)", time.Since(start).Round(time.Millisecond))
		if who != "198.51.100.1" {
			t.Fatalf("the internet saw %s, want the exit's 198.51.100.1", who)
		}
		if sha256.Sum256(got) != sha256.Sum256(blob) {
			t.Fatalf("1 MiB arrived altered (%d bytes)", len(got))
		}
	})
	t.Run("IPv6", func(t *testing.T) {
		who, got := fetch(t, clientDial, "[2001:db8:1::2]:8080")
		if who != "2001:db8:1::1" || !bytes.Equal(got, blob) {
			t.Fatalf("over IPv6 the internet saw %s and %d bytes arrived", who, len(got))
		}
	})
	t.Run("entry forwards only UDP to the exit", func(t *testing.T) {
		c := nftCounters(t, n.e, "fgcap")
		all, udp := c["sent"], c["udp_exit"]
		if udp < 100 || all != udp {
			t.Fatalf("entry → exit: %d packets, %d of them UDP to the exit's WireGuard port", all, udp)
		}
		t.Logf("entry → exit during the transfers: %d packets, all UDP to %s", all, exitEP)
	})
	t.Run("the exit never sees the client's address", func(t *testing.T) {
		if _, err := os.Stat("/proc/net/nf_conntrack"); err != nil {
			t.Skip("no /proc/net/nf_conntrack")
		}
		// Every flow the exit's host tracked (the relayed registrations,
		// the WireGuard UDP, the clients' connections) names the entry,
		// never the client's 192.0.2.100.
		out := run(t, "ip", "netns", "exec", n.x, "cat", "/proc/net/nf_conntrack")
		if !strings.Contains(out, "src=203.0.113.1 ") {
			t.Fatalf("the exit tracked no flow from the entry:\n%s", out)
		}
		if strings.Contains(out, "192.0.2.100") {
			t.Fatalf("the client's address appears at the exit:\n%s", out)
		}
	})
	t.Run("entry drops non-UDP and UDP to non-exits", func(t *testing.T) {
		src := client.outerAddr
		for _, pkt := range [][]byte{
			testpkt.IPv4(t, src, exitEP.Addr(), ippkt.ProtoTCP, exitEP.Port(), []byte("tcp to the exit")),
			testpkt.IPv4(t, src, netip.MustParseAddr("203.0.113.1"), ippkt.ProtoUDP, 53, []byte("udp to the entry's LAN")),
			testpkt.IPv4(t, src, netip.MustParseAddr("203.0.113.2"), ippkt.ProtoUDP, 53, []byte("udp to the exit's other port")),
		} {
			bp := bufPool.Get().(*[]byte)
			*bp = append((*bp)[:0], pkt...)
			client.outerTUN.Inject(bp)
		}
		poll.Until(t, 30*time.Second, "the entry to count the drops", func() bool {
			return counterValue(entry.m.dropped.WithLabelValues(dropNotUDP)) >= 1 &&
				counterValue(entry.m.dropped.WithLabelValues(dropNotExit)) >= 2
		})
	})
	t.Run("exit policy on the WireGuard door", func(t *testing.T) {
		rejected := func(key string) uint64 {
			m, err := exitNet.Rejected()
			if err != nil {
				t.Fatal(err)
			}
			return m[key].Packets
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, c := range []struct{ addr, reason string }{
			{"198.51.100.2:25", platform.RejectSMTP},
			{"203.0.113.2:51821", platform.RejectExitHost},
		} {
			if conn, err := clientDial(ctx, "tcp", c.addr); err == nil {
				conn.Close()
				t.Fatalf("connected to %s through the exit", c.addr)
			}
			if rejected(c.reason) == 0 {
				t.Fatalf("%s refused but not counted as %s", c.addr, c.reason)
			}
		}
		for _, c := range []struct{ addr, reason string }{
			{"10.99.0.1:53", platform.RejectPrivate(netip.MustParsePrefix("10.0.0.0/8"))},
			{netip.AddrPortFrom(other.AddrV4.Addr(), 53).String(), platform.RejectClientToClient},
		} {
			u, err := clientDial(ctx, "udp", c.addr)
			if err != nil {
				t.Fatal(err)
			}
			poll.Until(t, 30*time.Second, c.reason+" counted", func() bool {
				u.Write([]byte("hello?"))
				return rejected(c.reason) > 0
			})
			u.Close()
		}
	})
	t.Run("a removed peer's connections are forgotten", func(t *testing.T) {
		// Keep a flow open through the exit, then remove the peer as
		// expiry would: its conntrack entries go before its address is
		// handed out again.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := clientDial(ctx, "tcp", "198.51.100.2:8080")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		addr := xreg.AddrV4.Addr()
		flows := func() int {
			out := run(t, "ip", "netns", "exec", n.x, "cat", "/proc/net/nf_conntrack")
			return strings.Count(out, "src="+addr.String()+" ")
		}
		if _, err := os.Stat("/proc/net/nf_conntrack"); err != nil {
			t.Skip("no /proc/net/nf_conntrack to read the flows from")
		}
		poll.Until(t, 30*time.Second, "the exit to track the client's flow", func() bool { return flows() > 0 })
		exit.peers.remove(peerKey(innerPub))
		if n := flows(); n != 0 {
			t.Fatalf("%d conntrack entries of %s left after its peer was removed", n, addr)
		}
	})
}
