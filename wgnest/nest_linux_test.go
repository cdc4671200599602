package wgnest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/curve25519"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	wgtun "golang.zx2c4.com/wireguard/tun"

	"github.com/nym-go/nym/internal/leakcheck"
	"github.com/nym-go/nym/internal/netnstest"
	"github.com/nym-go/nym/tun"
)

func requireRoot(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("skipping root test in -short mode")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_NET_ADMIN) for network namespaces, TUN devices and nftables")
	}
	for _, c := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("needs %s", c)
		}
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("needs /dev/net/tun: %v", err)
	}
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// The addresses of the test network: the LAN between the client's
// namespace and the gateways', the client's addresses in the outer tunnel,
// and the inner tunnel's (client .2, exit .1).
var (
	clientLAN = netip.MustParseAddr("192.0.2.2")
	gwLAN     = netip.MustParseAddr("192.0.2.1")
	outerV4   = netip.MustParseAddr("198.51.100.2")
	outerV6   = netip.MustParseAddr("2001:db8:16::2")
	innerV4   = netip.MustParsePrefix("203.0.113.2/24")
	innerV6   = netip.MustParsePrefix("2001:db8:15::2/64")
	exitV4    = netip.MustParseAddr("203.0.113.1")
	exitV6    = netip.MustParseAddr("2001:db8:15::1")
)

const testMark = 0x6e796d

type keypair struct{ priv, pub [32]byte }

func newKey(t testing.TB) keypair {
	var k keypair
	rand.Read(k.priv[:])
	k.priv[0] &= 248
	k.priv[31] = k.priv[31]&127 | 64
	pub, err := curve25519.X25519(k.priv[:], curve25519.Basepoint)
	if err != nil {
		t.Fatal(err)
	}
	copy(k.pub[:], pub)
	return k
}

// testNet is a client namespace and a gateways' namespace joined by a
// veth pair; in the gateways' namespace, a test entry (a WireGuard device
// whose tun relays the client's datagrams to the exit over UDP) and an
// exit (a WireGuard device on a kernel TUN holding the inner tunnel's
// exit addresses).
type testNet struct {
	client, gw string // namespace names
	entry      *testEntry
	exit       *device.Device
	entryEP    netip.AddrPort
	exitEP     netip.AddrPort
	nest       *Tunnel
	nftTable   string
}

func newTestNet(t testing.TB) *testNet {
	n, sfx := newNamespaces(t)
	n.nftTable = "wgnest" + sfx
	// Count the client's UDP to the entry, marked and not.
	rules := fmt.Sprintf(`table inet %s {
	chain out {
		type filter hook output priority 0; policy accept;
		ip daddr %s udp dport != 0 meta mark %d counter comment "marked"
		ip daddr %s udp dport != 0 meta mark != %d counter comment "unmarked"
	}
}`, n.nftTable, gwLAN, testMark, gwLAN, testMark)
	cmd := exec.Command("ip", "netns", "exec", n.client, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}

	clientInner, clientOuter, exitKey, entryKey := newKey(t), newKey(t), newKey(t), newKey(t)
	var innerPSK, outerPSK [32]byte
	rand.Read(innerPSK[:])
	rand.Read(outerPSK[:])
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}

	// The exit: a kernel TUN with the inner tunnel's exit addresses.
	exitTUN := "wgx" + sfx
	err := netnstest.DoNamed(n.gw, func() error {
		// Our kernel TUN, not wireguard's: wireguard's reports the link
		// going up as an event on which the device reopens its sockets,
		// from a goroutine outside this namespace.
		dev, err := tun.CreateKernel(exitTUN, DefaultOuterMTU)
		if err != nil {
			return err
		}
		n.exit = device.NewDevice(newTunDevice(dev), conn.NewStdNetBind(), wgLogger(log, "test exit"))
		conf := fmt.Sprintf("private_key=%s\nlisten_port=0\npublic_key=%s\npreshared_key=%s\nallowed_ip=%s\nallowed_ip=%s\n",
			hex.EncodeToString(exitKey.priv[:]), hex.EncodeToString(clientInner.pub[:]), hex.EncodeToString(innerPSK[:]),
			netip.PrefixFrom(innerV4.Addr(), 32), netip.PrefixFrom(innerV6.Addr(), 128))
		if err := n.exit.IpcSet(conf); err != nil {
			return err
		}
		if err := n.exit.Up(); err != nil {
			return err
		}
		n.exitEP = netip.AddrPortFrom(gwLAN, listenPort(t, n.exit))
		return nil
	})
	if n.exit != nil {
		t.Cleanup(n.exit.Close)
	}
	if err != nil {
		t.Fatal(err)
	}
	run(t, "ip", "-n", n.gw, "addr", "add", netip.PrefixFrom(exitV4, 24).String(), "dev", exitTUN)
	run(t, "ip", "-n", n.gw, "addr", "add", netip.PrefixFrom(exitV6, 64).String(), "dev", exitTUN, "nodad")
	run(t, "ip", "-n", n.gw, "link", "set", exitTUN, "up")

	// The entry: relays the client's datagrams to the exit endpoint.
	err = netnstest.DoNamed(n.gw, func() error {
		var err error
		n.entry, err = newTestEntry(n.exitEP, netip.AddrPortFrom(outerV4, 0))
		if err != nil {
			return err
		}
		n.entry.dev = device.NewDevice(n.entry, conn.NewStdNetBind(), wgLogger(log, "test entry"))
		conf := fmt.Sprintf("private_key=%s\nlisten_port=0\npublic_key=%s\npreshared_key=%s\nallowed_ip=%s/32\nallowed_ip=%s/128\n",
			hex.EncodeToString(entryKey.priv[:]), hex.EncodeToString(clientOuter.pub[:]), hex.EncodeToString(outerPSK[:]), outerV4, outerV6)
		if err := n.entry.dev.IpcSet(conf); err != nil {
			return err
		}
		if err := n.entry.dev.Up(); err != nil {
			return err
		}
		n.entryEP = netip.AddrPortFrom(gwLAN, listenPort(t, n.entry.dev))
		return nil
	})
	if n.entry != nil {
		t.Cleanup(func() { n.entry.Close() })
	}
	if err != nil {
		t.Fatal(err)
	}

	// The client: nymvpn0's stand-in and the nested tunnel.
	n.startNest(t, "wgt"+sfx, Config{
		InnerKey: clientInner.priv, OuterKey: clientOuter.priv,
		Entry:   Peer{PublicKey: entryKey.pub, PSK: outerPSK, Endpoint: n.entryEP},
		Exit:    Peer{PublicKey: exitKey.pub, PSK: innerPSK, Endpoint: n.exitEP},
		OuterV4: outerV4, OuterV6: outerV6, Mark: testMark, Logger: log,
	}, innerV4, innerV6)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.nest.WaitHandshake(ctx); err != nil {
		t.Fatal(err)
	}
	return n
}

// newNamespaces makes the client's and the gateways' namespaces, joined by
// a veth pair on clientLAN and gwLAN, removed when the test ends; sfx is
// their random suffix, for the names of what the test adds.
func newNamespaces(t testing.TB) (n *testNet, sfx string) {
	requireRoot(t)
	var rb [3]byte
	rand.Read(rb[:])
	sfx = hex.EncodeToString(rb[:])
	n = &testNet{client: "wgnc" + sfx, gw: "wgng" + sfx}
	for _, ns := range []string{n.client, n.gw} {
		run(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	run(t, "ip", "link", "add", "wgc"+sfx, "netns", n.client, "type", "veth", "peer", "name", "wgg"+sfx, "netns", n.gw)
	run(t, "ip", "-n", n.client, "addr", "add", clientLAN.String()+"/24", "dev", "wgc"+sfx)
	run(t, "ip", "-n", n.gw, "addr", "add", gwLAN.String()+"/24", "dev", "wgg"+sfx)
	run(t, "ip", "-n", n.client, "link", "set", "wgc"+sfx, "up")
	run(t, "ip", "-n", n.gw, "link", "set", "wgg"+sfx, "up")
	return n, sfx
}

// startNest creates the client's TUN tunName (the stand-in for nymvpn0)
// in its namespace with addrs, and the nested tunnel on it with cfg.
func (n *testNet) startNest(t testing.TB, tunName string, cfg Config, addrs ...netip.Prefix) {
	err := netnstest.DoNamed(n.client, func() error {
		dev, err := tun.CreateKernel(tunName, DefaultInnerMTU)
		if err != nil {
			return err
		}
		cfg.TUN = dev
		n.nest, err = New(cfg)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.nest.Close() })
	for _, a := range addrs {
		if a.IsValid() {
			run(t, "ip", "-n", n.client, "addr", "add", a.String(), "dev", tunName, "nodad")
		}
	}
	run(t, "ip", "-n", n.client, "link", "set", tunName, "up")
}

func listenPort(t testing.TB, d *device.Device) uint16 {
	text, err := d.IpcGet()
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^listen_port=(\d+)$`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no listen port in %q", text)
	}
	p, _ := strconv.Atoi(m[1])
	return uint16(p)
}

// udpCounters reads the client's marked and unmarked UDP to the gateways.
func (n *testNet) udpCounters(t testing.TB) (marked, unmarked int) {
	out := run(t, "ip", "netns", "exec", n.client, "nft", "list", "table", "inet", n.nftTable)
	re := regexp.MustCompile(`counter packets (\d+) bytes \d+ comment "(\w+)"`)
	for _, m := range re.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.Atoi(m[1])
		if m[2] == "marked" {
			marked = v
		} else {
			unmarked = v
		}
	}
	return marked, unmarked
}

// testEntry is the entry's side for the test: the tun of a WireGuard
// device that relays each datagram the client sends inside the outer
// tunnel to the exit from a UDP socket of its own, and writes the exit's
// answers back as datagrams to the client. It records what it saw.
type testEntry struct {
	dev     *device.Device
	exit    netip.AddrPort
	sock    *net.UDPConn
	client  atomic.Value // netip.AddrPort: the client's address and port in the outer tunnel
	replies chan []byte
	events  chan wgtun.Event
	done    chan struct{}
	once    sync.Once
	wg      sync.WaitGroup

	relayed atomic.Int64 // datagrams relayed to the exit
	other   atomic.Int64 // packets from the client that were not datagrams to the exit
}

func newTestEntry(exit netip.AddrPort, client netip.AddrPort) (*testEntry, error) {
	sock, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(exit))
	if err != nil {
		return nil, err
	}
	sock.SetReadBuffer(4 << 20)
	e := &testEntry{exit: exit, sock: sock, replies: make(chan []byte, 256), events: make(chan wgtun.Event), done: make(chan struct{})}
	e.client.Store(client)
	e.wg.Go(func() {
		for {
			buf := make([]byte, 2048)
			n, err := sock.Read(buf)
			if err != nil {
				return
			}
			pkt := make([]byte, 48+n)
			m, err := Datagram{Src: exit, Dst: e.client.Load().(netip.AddrPort), Payload: buf[:n]}.Marshal(pkt)
			if err != nil {
				continue
			}
			select {
			case e.replies <- pkt[:m]:
			case <-e.done:
				return
			}
		}
	})
	return e, nil
}

func (e *testEntry) File() *os.File             { return nil }
func (e *testEntry) MTU() (int, error)          { return DefaultOuterMTU, nil }
func (e *testEntry) Name() (string, error)      { return "testentry", nil }
func (e *testEntry) Events() <-chan wgtun.Event { return e.events }
func (e *testEntry) BatchSize() int             { return 1 }

func (e *testEntry) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	select {
	case p := <-e.replies:
		sizes[0] = copy(bufs[0][offset:], p)
		return 1, nil
	case <-e.done:
		return 0, os.ErrClosed
	}
}

func (e *testEntry) Write(bufs [][]byte, offset int) (int, error) {
	for _, b := range bufs {
		d, err := ParseDatagram(b[offset:])
		if err != nil || d.Dst != e.exit {
			e.other.Add(1)
			continue
		}
		e.client.Store(d.Src)
		e.relayed.Add(1)
		e.sock.Write(d.Payload)
	}
	return len(bufs), nil
}

func (e *testEntry) Close() error {
	e.once.Do(func() {
		close(e.done)
		close(e.events)
		e.sock.Close()
		if e.dev != nil {
			go e.dev.Close() // Close is called from dev.Close too; do not wait on ourselves
		}
	})
	e.wg.Wait()
	return nil
}

// transfer sends size random bytes over TCP from the client's namespace to
// a listener at dst in the gateways' namespace, which answers their
// SHA-256.
func (n *testNet) transfer(t testing.TB, dst netip.Addr, size int) {
	t.Helper()
	n.transferAt(t, dst, size, 0)
}

// transferAt is transfer with the sender paced to at most rate bytes per
// second (0: as fast as TCP goes), written in sixteenths of a second.
func (n *testNet) transferAt(t testing.TB, dst netip.Addr, size, rate int) {
	t.Helper()
	var ln net.Listener
	if err := netnstest.DoNamed(n.gw, func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(dst, 0).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait() // after the listener is closed (defers run last first)
	defer ln.Close()
	wg.Go(func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(60 * time.Second))
		h := sha256.New()
		io.Copy(h, c)
		c.Write(h.Sum(nil))
	})
	var c net.Conn
	if err := netnstest.DoNamed(n.client, func() (err error) {
		c, err = net.DialTimeout("tcp", ln.Addr().String(), 20*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	data := make([]byte, size)
	rand.Read(data)
	chunk := size
	var tick *time.Ticker
	if rate > 0 {
		chunk = max(rate/16, 1)
		tick = time.NewTicker(time.Second / 16)
		defer tick.Stop()
	}
	for rest := data; len(rest) > 0; {
		k := min(chunk, len(rest))
		if _, err := c.Write(rest[:k]); err != nil {
			t.Fatal(err)
		}
		rest = rest[k:]
		if tick != nil && len(rest) > 0 {
			<-tick.C
		}
	}
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(data)
	if !bytes.Equal(got, want[:]) {
		t.Fatalf("to %s: checksum %x, want %x", dst, got, want)
	}
}

// TestNestedTunnel carries TCP over IPv4 and IPv6 through the nested
// tunnel, real WireGuard at both gateways, and checks what the entry saw
// and what left the client.
func TestNestedTunnel(t *testing.T) {
	leakcheck.Check(t)
	n := newTestNet(t)
	n.transfer(t, exitV4, 1<<20)
	n.transfer(t, exitV6, 256<<10)

	// The entry saw only datagrams to the exit's endpoint: the inner
	// addresses never appeared to it in clear.
	if n.entry.relayed.Load() == 0 || n.entry.other.Load() != 0 {
		t.Errorf("entry relayed %d datagrams to the exit, saw %d other packets", n.entry.relayed.Load(), n.entry.other.Load())
	}
	// Everything that left the client for the gateways carried the mark.
	marked, unmarked := n.udpCounters(t)
	if marked == 0 || unmarked != 0 {
		t.Errorf("client's UDP to the gateways: %d packets marked, %d unmarked", marked, unmarked)
	}
	st := n.nest.Stats()
	if st.Inner.RxBytes == 0 || st.Outer.RxBytes < st.Inner.RxBytes || st.Dropped != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestWatchBlamesTheGatewayThatWentAway: with the entry gone nothing comes
// back from either gateway (Outer); with only the exit gone the entry
// still answers the probes.
func TestWatchBlamesTheGatewayThatWentAway(t *testing.T) {
	for _, entryGone := range []bool{false, true} {
		t.Run(fmt.Sprintf("entry gone %v", entryGone), func(t *testing.T) {
			leakcheck.Check(t)
			n := newTestNet(t)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			// Healthy and idle: no verdict while the probes are answered.
			wctx, wcancel := context.WithTimeout(ctx, 2*MinStale)
			err := n.nest.Watch(wctx, MinStale)
			wcancel()
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("idle healthy tunnel: Watch = %v", err)
			}
			if entryGone {
				n.entry.Close()
			} else {
				n.exit.Close()
			}
			var stale *StaleError
			if err := n.nest.Watch(ctx, MinStale); !errors.As(err, &stale) {
				t.Fatalf("Watch = %v, want a StaleError", err)
			}
			if stale.Outer != entryGone {
				t.Fatalf("Watch blamed the entry: %v; the entry is gone: %v", stale.Outer, entryGone)
			}
		})
	}
}

// BenchmarkNestedTunnel measures TCP goodput through the nested tunnel
// (client TUN → inner and outer WireGuard → test entry → exit TUN), one
// 8 MiB transfer per iteration.
func BenchmarkNestedTunnel(b *testing.B) {
	n := newTestNet(b)
	const size = 8 << 20
	b.SetBytes(size)
	b.ResetTimer()
	for b.Loop() {
		n.transfer(b, exitV4, size)
	}
}
