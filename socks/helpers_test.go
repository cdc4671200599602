package socks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/proxy"
)

// testName is known only to the test resolver: were the host resolver ever
// asked, the lookup would fail (.test is reserved, RFC 6761).
const testName = "internet.test"

// testDialer is the outbound side for tests: host loopback sockets, a
// resolver that knows only testName, and injected errors by port.
type testDialer struct {
	t     testing.TB
	errs  map[uint16]error         // port → error DialContext returns
	hang  map[uint16]bool          // port → DialContext waits for ctx
	slow  map[uint16]chan struct{} // port → DialContext connects once it is closed
	mu    sync.Mutex
	qs    []string // names looked up
	dials []string // addresses dialed
}

func newTestDialer(t testing.TB) *testDialer {
	return &testDialer{t: t, errs: map[uint16]error{}, hang: map[uint16]bool{}, slow: map[uint16]chan struct{}{}}
}

func (d *testDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	d.mu.Lock()
	d.dials = append(d.dials, address)
	d.mu.Unlock()
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		// The server must resolve names itself, through LookupNetIP.
		d.t.Errorf("DialContext got a name, not an address: %q", address)
		return nil, err
	}
	if e, ok := d.errs[ap.Port()]; ok {
		return nil, e
	}
	if d.hang[ap.Port()] {
		<-ctx.Done()
		return nil, &net.OpError{Op: "dial", Net: network, Err: ctx.Err()}
	}
	if release, ok := d.slow[ap.Port()]; ok {
		select {
		case <-release:
		case <-ctx.Done():
			return nil, &net.OpError{Op: "dial", Net: network, Err: ctx.Err()}
		}
	}
	var nd net.Dialer
	return nd.DialContext(ctx, network, address)
}

func (d *testDialer) ListenPacket(ctx context.Context, network string) (net.PacketConn, error) {
	return net.ListenPacket("udp4", "127.0.0.1:0")
}

func (d *testDialer) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	d.mu.Lock()
	d.qs = append(d.qs, host)
	d.mu.Unlock()
	if host == testName {
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func (d *testDialer) queries() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.qs...)
}

func (d *testDialer) dialCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.dials)
}

// startServer runs s on a loopback listener until the test ends and checks
// that Serve returns.
func startServer(t testing.TB, s *Server) string {
	t.Helper()
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Serve did not return after cancel")
		}
	})
	return ln.Addr().String()
}

// startHTTP serves "hello from <path>" on loopback and returns its port.
func startHTTP(t testing.TB) uint16 {
	t.Helper()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s", r.URL.Path)
	}))
	t.Cleanup(hs.Close)
	return portOf(t, hs.Listener.Addr())
}

func portOf(t testing.TB, a net.Addr) uint16 {
	t.Helper()
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		t.Fatal(err)
	}
	return ap.Port()
}

// httpGet fetches url through a SOCKS5 proxy using golang.org/x/net/proxy.
func httpGet(t testing.TB, proxyAddr string, auth *proxy.Auth, url string) (string, error) {
	t.Helper()
	d, err := proxy.SOCKS5("tcp", proxyAddr, auth, proxy.Direct)
	if err != nil {
		return "", err
	}
	cl := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DialContext: d.(proxy.ContextDialer).DialContext,
		},
	}
	defer cl.CloseIdleConnections()
	resp, err := cl.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// socks4Connect performs a SOCKS4 (ip set) or SOCKS4a (name set) CONNECT
// by hand and returns the connection and the reply code.
func socks4Connect(t testing.TB, proxyAddr, user string, ip netip.Addr, name string, port uint16) (net.Conn, byte) {
	t.Helper()
	c, err := net.DialTimeout("tcp", proxyAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	req := []byte{4, 1, byte(port >> 8), byte(port)}
	if name != "" {
		ip = netip.AddrFrom4([4]byte{0, 0, 0, 1})
	}
	a4 := ip.As4()
	req = append(req, a4[:]...)
	req = append(append(req, user...), 0)
	if name != "" {
		req = append(append(req, name...), 0)
	}
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	var rep [8]byte
	if _, err := io.ReadFull(c, rep[:]); err != nil {
		t.Fatalf("read SOCKS4 reply: %v", err)
	}
	if rep[0] != 0 {
		t.Errorf("SOCKS4 reply VN = %d, want 0", rep[0])
	}
	return c, rep[1]
}

// getOver sends an HTTP/1.0 GET over c and returns the body.
func getOver(t testing.TB, c net.Conn, path string) string {
	t.Helper()
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.0\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	s := string(b)
	for i := 0; i+3 < len(s); i++ {
		if s[i:i+4] == "\r\n\r\n" {
			return s[i+4:]
		}
	}
	return ""
}

// freePort returns a loopback port nothing listens on.
func freePort(t testing.TB) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := portOf(t, ln.Addr())
	ln.Close()
	return p
}

func urlFor(host string, port uint16, path string) string {
	return "http://" + net.JoinHostPort(host, strconv.Itoa(int(port))) + path
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second) // generous: a busy machine
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var errBoom = errors.New("boom")

func contextWithCancel() (context.Context, context.CancelFunc) {
	return context.WithCancel(context.Background())
}
