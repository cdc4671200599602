package socks

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/proxy"
)

func TestSOCKS5ConnectNoAuth(t *testing.T) {
	d := newTestDialer(t)
	s := &Server{Dialer: d}
	addr := startServer(t, s)
	port := startHTTP(t)

	body, err := httpGet(t, addr, nil, urlFor(testName, port, "/a"))
	if err != nil {
		t.Fatalf("GET through SOCKS5: %v", err)
	}
	if body != "hello from /a" {
		t.Errorf("body = %q", body)
	}
	if q := d.queries(); !slices.Contains(q, testName) {
		t.Errorf("test resolver was not asked for %s: %v", testName, q)
	}
	// The relay counts bytes after it has passed them on, so the client can
	// hold the answer a moment before the counters show it: wait for that.
	waitFor(t, "1 connect and bytes both ways counted", func() bool {
		st := s.Stats()
		return st.Connects == 1 && st.BytesUp > 0 && st.BytesDown > 0
	})
}

func TestSOCKS5ConnectUserPass(t *testing.T) {
	d := newTestDialer(t)
	s := &Server{Dialer: d, Authenticate: func(u, p string) error {
		if u == "alice" && p == "secret" {
			return nil
		}
		return errors.New("bad credentials")
	}}
	addr := startServer(t, s)
	port := startHTTP(t)

	body, err := httpGet(t, addr, &proxy.Auth{User: "alice", Password: "secret"}, urlFor(testName, port, "/up"))
	if err != nil || body != "hello from /up" {
		t.Fatalf("GET with good credentials: %q, %v", body, err)
	}
	if _, err := httpGet(t, addr, &proxy.Auth{User: "alice", Password: "wrong"}, urlFor(testName, port, "/")); err == nil {
		t.Errorf("GET with a wrong password worked")
	}
	if _, err := httpGet(t, addr, nil, urlFor(testName, port, "/")); err == nil {
		t.Errorf("GET without credentials worked while they are required")
	}
	// SOCKS4 has only a user id: checked with an empty password.
	c, code := socks4Connect(t, addr, "mallory", netip.MustParseAddr("127.0.0.1"), "", port)
	c.Close()
	if code != socks4BadUser {
		t.Errorf("SOCKS4 with refused user id: reply 0x%02x, want 0x%02x", code, socks4BadUser)
	}
	// Each refusal is counted after its answer is written.
	waitFor(t, "3 rejections counted", func() bool { return s.Stats().Rejected == 3 })
}

func TestSOCKS4AndSOCKS4a(t *testing.T) {
	d := newTestDialer(t)
	addr := startServer(t, &Server{Dialer: d})
	port := startHTTP(t)

	c, code := socks4Connect(t, addr, "", netip.MustParseAddr("127.0.0.1"), "", port)
	if code != socks4Granted {
		t.Fatalf("SOCKS4 reply 0x%02x", code)
	}
	if b := getOver(t, c, "/four"); b != "hello from /four" {
		t.Errorf("SOCKS4 body = %q", b)
	}
	c.Close()

	c, code = socks4Connect(t, addr, "someone", netip.Addr{}, testName, port)
	if code != socks4Granted {
		t.Fatalf("SOCKS4a reply 0x%02x", code)
	}
	if b := getOver(t, c, "/foura"); b != "hello from /foura" {
		t.Errorf("SOCKS4a body = %q", b)
	}
	c.Close()
	if q := d.queries(); !slices.Equal(q, []string{testName}) {
		t.Errorf("resolver queries = %v, want [%s]", q, testName)
	}
}

func TestIsolationByUser(t *testing.T) {
	def, alice, bob := newTestDialer(t), newTestDialer(t), newTestDialer(t)
	var asked []string
	s := &Server{Dialer: def, Isolate: func(user string) Dialer {
		asked = append(asked, user) // handlers run one at a time in this test
		switch user {
		case "alice":
			return alice
		case "bob":
			return bob
		}
		return nil // falls back to Dialer
	}}
	addr := startServer(t, s)
	port := startHTTP(t)

	if _, err := httpGet(t, addr, &proxy.Auth{User: "alice", Password: "x"}, urlFor(testName, port, "/")); err != nil {
		t.Fatal(err)
	}
	if alice.dialCount() != 1 || bob.dialCount() != 0 || def.dialCount() != 0 {
		t.Errorf("after alice: dials alice=%d bob=%d default=%d", alice.dialCount(), bob.dialCount(), def.dialCount())
	}
	c, code := socks4Connect(t, addr, "bob", netip.Addr{}, testName, port)
	c.Close()
	if code != socks4Granted || bob.dialCount() != 1 || alice.dialCount() != 1 {
		t.Errorf("after SOCKS4 bob: code 0x%02x, dials alice=%d bob=%d", code, alice.dialCount(), bob.dialCount())
	}
	if _, err := httpGet(t, addr, nil, urlFor(testName, port, "/")); err != nil {
		t.Fatal(err)
	}
	if def.dialCount() != 1 {
		t.Errorf("anonymous client did not use the default dialer")
	}
	if len(bob.queries()) != 1 || len(alice.queries()) != 1 {
		t.Errorf("names must be resolved by the user's own dialer: alice %v bob %v", alice.queries(), bob.queries())
	}
	if !slices.Equal(asked, []string{"alice", "bob", ""}) {
		t.Errorf("Isolate asked for %q", asked)
	}
}

// TestHalfClose: the client shuts down its sending side and still gets the
// server's answer, which is only sent after EOF.
func TestHalfClose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		io.WriteString(c, strings.ToUpper(string(b)))
	}()
	addr := startServer(t, &Server{Dialer: newTestDialer(t)})
	c, code := socks4Connect(t, addr, "", netip.MustParseAddr("127.0.0.1"), "", portOf(t, ln.Addr()))
	defer c.Close()
	if code != socks4Granted {
		t.Fatalf("reply 0x%02x", code)
	}
	io.WriteString(c, "half closed")
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(c)
	if err != nil || string(b) != "HALF CLOSED" {
		t.Errorf("answer after half-close = %q, %v", b, err)
	}
}

// TestMaxConns: with MaxConns 1, a second client waits until the first ends.
func TestMaxConns(t *testing.T) {
	addr := startServer(t, &Server{Dialer: newTestDialer(t), MaxConns: 1})
	first, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "first connection", func() bool { return true })
	second, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	second.Write([]byte{5, 1, 0})
	second.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	var b [2]byte
	if _, err := io.ReadFull(second, b[:]); err == nil {
		t.Fatalf("second client served while the first holds the only slot")
	}
	first.Close()
	second.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(second, b[:]); err != nil || b != [2]byte{5, 0} {
		t.Errorf("second client after the first closed: %v, %v", b, err)
	}
}

// TestServeStops: cancelling Serve's context ends relayed connections too.
func TestServeStops(t *testing.T) {
	port := startHTTP(t)
	s := &Server{Dialer: newTestDialer(t)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := contextWithCancel()
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	c, code := socks4Connect(t, ln.Addr().String(), "", netip.MustParseAddr("127.0.0.1"), "", port)
	defer c.Close()
	if code != socks4Granted {
		t.Fatalf("reply 0x%02x", code)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve = %v, want nil after cancel", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
	if s.Stats().Active != 0 {
		t.Errorf("Active = %d after Serve returned", s.Stats().Active)
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Errorf("relayed connection still open after Serve returned")
	}
}

// A dial slower than HandshakeTimeout still connects: the handshake
// deadline bounds the client's part, the dial has DialTimeout. Before, the
// handshake deadline stayed on the client's connection through the dial,
// so the success reply could not be written and the client saw EOF; over
// the mixnet on a loaded machine (nymvpn's TestSocks5Isolation at load 20,
// a tunnel opened lazily inside the dial) that took more than 10 s.
func TestSlowDialOutlivesHandshakeTimeout(t *testing.T) {
	const hs = 100 * time.Millisecond
	d := newTestDialer(t)
	port := startHTTP(t)
	release := make(chan struct{})
	d.slow[port] = release
	s := &Server{Dialer: d, HandshakeTimeout: hs}
	addr := startServer(t, s)
	// slowly lets the next dial connect once the handshake deadline has
	// certainly passed (a sleep is a lower bound, however loaded the
	// machine).
	slowly := func() {
		before := d.dialCount()
		go func() {
			for d.dialCount() == before {
				time.Sleep(time.Millisecond)
			}
			time.Sleep(3 * hs)
			release <- struct{}{}
		}()
	}

	slowly()
	body, err := httpGet(t, addr, nil, urlFor("127.0.0.1", port, "/slow5"))
	if err != nil || body != "hello from /slow5" {
		t.Fatalf("SOCKS5 through a dial slower than the handshake timeout: %q, %v", body, err)
	}
	slowly()
	c, code := socks4Connect(t, addr, "", netip.MustParseAddr("127.0.0.1"), "", port)
	defer c.Close()
	if code != 90 {
		t.Fatalf("SOCKS4 through a dial slower than the handshake timeout: reply %d, want 90 (granted)", code)
	}
	if got := getOver(t, c, "/slow4"); got != "hello from /slow4" {
		t.Fatalf("SOCKS4: got %q", got)
	}
}
