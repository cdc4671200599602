package platform

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nym-go/nym/internal/netnstest"
)

// requireNetAdmin skips tests that build network namespaces unless they can.
func requireNetAdmin(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("network namespace test: skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("network namespace test: needs root (CAP_NET_ADMIN)")
	}
	for _, bin := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("network namespace test: needs %s: %v", bin, err)
		}
	}
}

// sh runs a command and fails the test if it fails; it returns the output.
func sh(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// ipNS runs `ip -n ns ARGS...`.
func ipNS(t *testing.T, ns string, args ...string) string {
	t.Helper()
	return sh(t, "ip", append([]string{"-n", ns}, args...)...)
}

// nftRuleset lists the ruleset of a namespace ("" for the host).
func nftRuleset(t *testing.T, ns string) string {
	t.Helper()
	if ns == "" {
		return sh(t, "nft", "list", "ruleset")
	}
	return sh(t, "ip", "netns", "exec", ns, "nft", "list", "ruleset")
}

// newNS creates a network namespace named plt<pid>-<suffix> (a stale one of
// the same name from a killed run goes first) with loopback up, and deletes
// it when the test ends; that takes its links and nftables tables along.
func newNS(t *testing.T, suffix string) string {
	t.Helper()
	name := fmt.Sprintf("plt%d-%s", os.Getpid(), suffix)
	if len(name) > 15 {
		t.Fatalf("namespace name %q too long", name)
	}
	exec.Command("ip", "netns", "del", name).Run()
	sh(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("delete namespace %s: %v\n%s", name, err, out)
		}
	})
	ipNS(t, name, "link", "set", "lo", "up")
	return name
}

// vethPair links namespace a (interface ifA) and b (interface ifB) and brings
// both ends up.
func vethPair(t *testing.T, a, ifA, b, ifB string) {
	t.Helper()
	ipNS(t, a, "link", "add", ifA, "type", "veth", "peer", "name", ifB, "netns", b)
	ipNS(t, a, "link", "set", ifA, "up")
	ipNS(t, b, "link", "set", ifB, "up")
}

// inNS runs fn on an OS thread locked into namespace ns. Whatever fn opens
// (sockets, netlink and nftables connections) stays bound to ns and may be
// used from any goroutine afterwards; goroutines fn starts would not run in
// ns, so fn starts none.
func inNS(t *testing.T, ns string, fn func() error) error {
	t.Helper()
	return netnstest.DoNamed(ns, fn)
}

// mustInNS is inNS failing the test on error.
func mustInNS(t *testing.T, ns string, fn func() error) {
	t.Helper()
	if err := inNS(t, ns, fn); err != nil {
		t.Fatalf("in namespace %s: %v", ns, err)
	}
}

// dialIn dials from namespace ns.
func dialIn(t *testing.T, ns, network, addr string, timeout time.Duration) (net.Conn, error) {
	t.Helper()
	var c net.Conn
	err := inNS(t, ns, func() error {
		var err error
		c, err = net.DialTimeout(network, addr, timeout)
		return err
	})
	if c != nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

// dialMarkedIn dials TCP from namespace ns with a socket carrying the
// tunnel's firewall mark (SO_MARK), as nymvpn's own sockets do.
func dialMarkedIn(t *testing.T, ns, addr string, mark int, timeout time.Duration) (net.Conn, error) {
	t.Helper()
	var c net.Conn
	err := inNS(t, ns, func() error {
		d := net.Dialer{Timeout: timeout, Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_MARK, mark) })
			return serr
		}}
		var err error
		c, err = d.Dial("tcp", addr)
		return err
	})
	if c != nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

// applyRoutesIn is ApplyRoutes in namespace ns, failing the test on error.
func applyRoutesIn(t *testing.T, ns string, cfg RouteConfig) *Routes {
	t.Helper()
	var routes *Routes
	mustInNS(t, ns, func() error {
		var err error
		routes, err = ApplyRoutes(cfg)
		return err
	})
	return routes
}

// listenIn opens a TCP listener in namespace ns that writes each peer's
// address to it and closes; the listener closes when the test ends.
func listenIn(t *testing.T, ns, addr string) net.Listener {
	t.Helper()
	return serveIn(t, ns, addr, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "%s\n", c.RemoteAddr())
	})
}

// serveIn opens a TCP listener in namespace ns that hands each connection
// to answer and then closes it; the listener closes when the test ends.
func serveIn(t *testing.T, ns, addr string, answer func(net.Conn)) net.Listener {
	t.Helper()
	var ln net.Listener
	mustInNS(t, ns, func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			answer(c)
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln
}

// udpSink counts datagrams arriving at addr in namespace ns.
type udpSink struct {
	conn *net.UDPConn
	got  chan []byte
}

func newUDPSink(t *testing.T, ns, addr string) *udpSink {
	t.Helper()
	s := &udpSink{got: make(chan []byte, 1024)}
	mustInNS(t, ns, func() error {
		ua, err := net.ResolveUDPAddr("udp", addr)
		if err != nil {
			return err
		}
		s.conn, err = net.ListenUDP("udp", ua)
		return err
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, _, err := s.conn.ReadFromUDP(buf)
			if err != nil {
				return
			}
			select {
			case s.got <- bytes.Clone(buf[:n]):
			default:
			}
		}
	}()
	t.Cleanup(func() { s.conn.Close(); <-done })
	return s
}

// received reports how many datagrams arrived within wait.
func (s *udpSink) received(wait time.Duration) int {
	n := 0
	deadline := time.After(wait)
	for {
		select {
		case <-s.got:
			n++
		case <-deadline:
			return n
		}
	}
}

// udpSocketIn opens an unconnected UDP socket in namespace ns.
func udpSocketIn(t *testing.T, ns string) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	mustInNS(t, ns, func() error {
		var err error
		c, err = net.ListenUDP("udp", &net.UDPAddr{})
		return err
	})
	t.Cleanup(func() { c.Close() })
	return c
}

// readLine reads the one line a listenIn server writes.
func readLine(t *testing.T, c net.Conn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 256)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("read from %s: %v", c.RemoteAddr(), err)
	}
	return strings.TrimSpace(string(buf[:n]))
}
