package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/net/proxy"

	"github.com/nym-go/nym/internal/leakcheck"
	"github.com/nym-go/nym/internal/testexit"
	"github.com/nym-go/nym/internal/testnet"
	"github.com/nym-go/nym/ipr"
	"github.com/nym-go/nym/mixnet/client"
	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/link"
	"github.com/nym-go/nym/tun"
	"github.com/nym-go/nym/vpn"
)

// The test network: a loopback mixnet (directory, three mixes, an entry
// and an exit gateway) whose exit announces the router key of the exit's
// IP packet router: ipr/exit's service (internal/testexit), with a mixnet
// client of its own. The router's "internet" is a gVisor stack with a web
// server at webAddr and a DNS server at dnsAddr that alone knows webName.
var (
	webAddr = netip.MustParseAddr("192.0.2.1")
	dnsAddr = netip.MustParseAddr("192.0.2.53")
)

const webName = "internet.test"

// testNet is the in-process mixnet of internal/testnet; its exit announces
// the test router's key.
type testNet struct {
	*testnet.Net
	dirURL string
	dirKey ed25519.PublicKey
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func startTestNet(t *testing.T, routerKey [32]byte) *testNet {
	t.Helper()
	n := testnet.Start(t, testnet.Options{RouterKey: &routerKey})
	return &testNet{Net: n, dirURL: n.DirectoryURL, dirKey: n.DirectoryKey}
}

// gateway is the identity of the running node in role.
func (n *testNet) gateway(role directory.Role) directory.Key {
	for _, nd := range n.Nodes() {
		if r, _ := nd.Role(); nd.Running() && r == role {
			return directory.Key(nd.Identity())
		}
	}
	return directory.Key{}
}

// startExit runs the exit's IP packet router with identity id at
// the exit gateway, over a userspace internet; it returns that internet.
func startExit(t *testing.T, n *testNet, id link.KeyPair, lp client.Loopix) *tun.Net {
	t.Helper()
	return testexit.Start(t, n.Net, &id, lp, webAddr, dnsAddr).Internet
}

// serveInternet serves page over HTTP at webAddr, with the client's
// address in the X-Client header, and answers A queries for webName at
// dnsAddr.
func serveInternet(t *testing.T, inet *tun.Net, page []byte) {
	t.Helper()
	ln, err := inet.ListenTCPAddrPort(netip.AddrPortFrom(webAddr, 80))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Client", r.RemoteAddr)
		w.Write(page)
	})}
	pc, err := inet.ListenUDPAddrPort(netip.AddrPortFrom(dnsAddr, 53))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { srv.Serve(ln) })
	wg.Go(func() {
		buf := make([]byte, 1500)
		for {
			m, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if out, ok := dnsAnswer(buf[:m]); ok {
				pc.WriteTo(out, from)
			}
		}
	})
	t.Cleanup(func() { srv.Close(); pc.Close(); wg.Wait() })
}

func dnsAnswer(query []byte) ([]byte, bool) {
	var q dnsmessage.Message
	if q.Unpack(query) != nil || len(q.Questions) != 1 {
		return nil, false
	}
	resp := dnsmessage.Message{
		Header:    dnsmessage.Header{ID: q.Header.ID, Response: true, RCode: dnsmessage.RCodeNameError},
		Questions: q.Questions,
	}
	if strings.EqualFold(q.Questions[0].Name.String(), webName+".") {
		resp.Header.RCode = dnsmessage.RCodeSuccess
		if q.Questions[0].Type == dnsmessage.TypeA {
			resp.Answers = []dnsmessage.Resource{{
				Header: dnsmessage.ResourceHeader{Name: q.Questions[0].Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 60},
				Body:   &dnsmessage.AResource{A: webAddr.As4()},
			}}
		}
	}
	out, err := resp.Pack()
	return out, err == nil
}

// socksNet is a test network with serveSocks running on it.
type socksNet struct {
	addr string
	page []byte
	pool *tunnelPool
	stop func() error
}

func startSocks(t *testing.T, so socksOptions) *socksNet {
	t.Helper()
	id, err := link.GenerateKeyPair(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	n := startTestNet(t, id.Public)
	return startSocksOn(t, n, id, so, connectRequest{
		DirectoryURL: n.dirURL,
		DirectoryKey: base64.RawURLEncoding.EncodeToString(n.dirKey),
	})
}

// startSocksOn runs the exit and the proxy on n, whose exit announces id;
// req names the directory.
func startSocksOn(t *testing.T, n *testNet, id link.KeyPair, so socksOptions, req connectRequest) *socksNet {
	t.Helper()
	inet := startExit(t, n, id, vpn.NoDelayProfile().Loopix)
	page := make([]byte, 64<<10)
	rand.Read(page)
	serveInternet(t, inet, page)

	req.Profile = "nodelay"
	req.dnsText = []string{dnsAddr.String()}
	if err := req.check(); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	up := make(chan struct{})
	so.Ready = func() { close(up) }
	var pool *tunnelPool
	so.onPool = func(p *tunnelPool) { pool = p }
	done := make(chan error, 1)
	go func() { done <- serveSocks(ctx, ln, req, so, quietLogger()) }()
	select {
	case <-up:
	case err := <-done:
		cancel()
		t.Fatalf("serveSocks: %v", err)
	case <-time.After(90 * time.Second):
		cancel()
		t.Fatal("the proxy did not come up")
	}
	var once sync.Once
	var stopErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case stopErr = <-done:
			case <-time.After(30 * time.Second):
				stopErr = errors.New("serveSocks did not return after cancel")
			}
		})
		return stopErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	})
	return &socksNet{addr: ln.Addr().String(), page: page, pool: pool, stop: stop}
}

// get fetches url through the proxy with SOCKS5 (remote name resolution),
// as user if not empty; it returns the body and the X-Client header.
func (s *socksNet) get(t *testing.T, url, user string) ([]byte, string) {
	t.Helper()
	var auth *proxy.Auth
	if user != "" {
		auth = &proxy.Auth{User: user, Password: "x"}
	}
	d, err := proxy.SOCKS5("tcp", s.addr, auth, proxy.Direct)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{
		DialContext:       d.(proxy.ContextDialer).DialContext,
		DisableKeepAlives: true,
	}}
	// A guard against hangs, not a speed target: the proxy dials through
	// a tunnel over the in-process mixnet, which a loaded machine slows.
	ctx, cancel := context.WithTimeout(context.Background(), testnet.LoadScaled(60*time.Second))
	defer cancel()
	rq, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := hc.Do(rq)
	if err != nil {
		t.Fatalf("GET %s through SOCKS5: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading %s: %v", url, err)
	}
	return body, resp.Header.Get("X-Client")
}

// A page on a host only the exit side's DNS knows is fetched through the
// proxy with SOCKS5 and, when curl is installed, SOCKS4a and SOCKS5h.
func TestSocks5FetchThroughTunnel(t *testing.T) {
	leakcheck.Check(t)
	s := startSocks(t, socksOptions{})
	body, from := s.get(t, "http://"+webName+"/", "")
	if !bytes.Equal(body, s.page) {
		t.Fatalf("SOCKS5: got %d bytes, not the %d-byte page", len(body), len(s.page))
	}
	if ap, err := netip.ParseAddrPort(from); err != nil || !ipr.ClientNetV4.Contains(ap.Addr()) {
		t.Errorf("the web server saw the client as %q, not an address of the exit's pool", from)
	}
	// Names are the tunnel's business only: an unknown one fails.
	d, _ := proxy.SOCKS5("tcp", s.addr, nil, proxy.Direct)
	if c, err := d.Dial("tcp", "nonexistent.test:80"); err == nil {
		c.Close()
		t.Error("dialing a name the tunnel's DNS does not know succeeded")
	}
	// Loopback is refused as a policy matter, not left to time out.
	if c, err := d.Dial("tcp", "127.0.0.1:80"); err == nil {
		c.Close()
		t.Error("dialing loopback through the tunnel succeeded")
	} else if !strings.Contains(err.Error(), "not allowed") {
		t.Errorf("loopback: %v, want a ruleset refusal", err)
	}

	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Log("no curl; SOCKS4a not tested with it")
		return
	}
	maxTime := strconv.Itoa(int(testnet.LoadScaled(60 * time.Second).Seconds())) // as in get
	for _, flag := range []string{"--socks4a", "--socks5-hostname"} {
		out, err := exec.Command(curl, "-sS", "--max-time", maxTime, flag, s.addr, "http://"+webName+"/").Output()
		if err != nil {
			t.Fatalf("curl %s: %v", flag, err)
		}
		if !bytes.Equal(out, s.page) {
			t.Fatalf("curl %s: got %d bytes, not the %d-byte page", flag, len(out), len(s.page))
		}
	}
	if err := s.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
}

// With isolation each user name gets a tunnel of its own (so another
// address at the exit), opened lazily, and idle tunnels are closed.
func TestSocks5Isolation(t *testing.T) {
	leakcheck.Check(t)
	// The idle timeout is long enough for another user's tunnel to open
	// on a loaded machine (-race, load 20 took over 3 s) before alice's
	// second fetch.
	s := startSocks(t, socksOptions{Isolate: true, MaxTunnels: 2, IdleTimeout: 10 * time.Second})
	_, fromA := s.get(t, "http://"+webName+"/", "alice")
	_, fromB := s.get(t, "http://"+webName+"/", "bob")
	_, fromA2 := s.get(t, "http://"+webName+"/", "alice")
	hostOf := func(s string) string { h, _, _ := net.SplitHostPort(s); return h }
	if hostOf(fromA) == hostOf(fromB) {
		t.Errorf("alice and bob share the exit address %s", hostOf(fromA))
	}
	if hostOf(fromA) != hostOf(fromA2) {
		t.Errorf("alice came from %s, then from %s", fromA, fromA2)
	}
	// A third user evicts the least recently used (bob's) tunnel.
	_, fromC := s.get(t, "http://"+webName+"/", "carol")
	if hostOf(fromC) == hostOf(fromA) {
		t.Errorf("carol shares alice's exit address %s", hostOf(fromA))
	}
	// (Alice's may have been closed as idle already.)
	if n := s.pool.tunnels(); n > 2 || n == 0 {
		t.Errorf("%d tunnels open, want 1 or 2 (--isolate-max)", n)
	}
	// Unused, they are closed after IdleTimeout.
	for deadline := time.Now().Add(60 * time.Second); s.pool.tunnels() > 0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d idle tunnels still open", s.pool.tunnels())
		}
	}
	if err := s.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
}
