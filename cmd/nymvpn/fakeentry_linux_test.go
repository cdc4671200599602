package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/link"
	"github.com/nym-go/nym/platform"
	"github.com/nym-go/nym/vpn"
)

// The fake entry's clients address: a web server that is not a gateway.
const fakeEntryAddr = "203.0.113.80:80"

// TestFakeEntryOpensNoHole: a node registered as an entry gateway whose
// clients address is another server's (here a web server's) must not make
// the client send anything to that server outside the tunnel. Before, every
// entry of the topology got a bypass route and a kill switch exception, so
// a plain connection to the server left by the uplink, from the client's
// real address, while the VPN said "connected".
//
// The mixnet is the in-process test network (loopback); the world namespace
// relays the real entry's clients port to it and serves the directory's
// topology with the fake entry added, signed by a directory key of the
// test's. The daemon runs in the client namespace.
func TestFakeEntryOpensNoHole(t *testing.T) {
	l := newLab(t)
	run(t, "ip", "-n", l.world, "addr", "add", "203.0.113.80/32", "dev", "w0")
	var web net.Listener
	l.in(l.world, func() error {
		var err error
		web, err = net.Listen("tcp", fakeEntryAddr)
		return err
	})
	go http.Serve(web, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.RemoteAddr) }))
	t.Cleanup(func() { web.Close() })

	fake := l.count("fake", "ip daddr 203.0.113.80")
	// The counter counts, and the server answers plain connections.
	if !l.poke(fakeEntryAddr) {
		t.Fatal("the web server does not answer the client before the VPN")
	}
	if fake() == 0 {
		t.Fatal("the counter did not count packets to the web server")
	}
	l.resetCounters()

	id, err := link.GenerateKeyPair(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	n := startTestNet(t, id.Public)
	startExit(t, n, id, vpn.NoDelayProfile().Loopix)
	top, err := n.Topology()
	if err != nil || len(top.Entry) == 0 {
		t.Fatalf("topology: %v", err)
	}
	entry := top.Entry[0]

	// The world: the real entry's clients port relayed to the test network.
	var relay net.Listener
	l.in(l.world, func() error {
		var err error
		relay, err = net.Listen("tcp", "192.0.2.1:9000")
		return err
	})
	var wg sync.WaitGroup
	t.Cleanup(func() { relay.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := relay.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				up, err := net.Dial("tcp", entry.ClientsAddr) // this goroutine is in the host's namespace
				if err != nil {
					return
				}
				defer up.Close()
				go func() { io.Copy(up, c); up.(*net.TCPConn).CloseWrite() }()
				io.Copy(c, up)
			})
		}
	})

	// The directory: the test network's topology, the real entry at the
	// relay, and a fake entry whose clients address is the web server.
	_, dirPriv, _ := ed25519.GenerateKey(rand.Reader)
	var dirLn net.Listener
	l.in(l.world, func() error {
		var err error
		dirLn, err = net.Listen("tcp", "192.0.2.1:8000")
		return err
	})
	dirSrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != directory.PathTopology {
			http.NotFound(w, r)
			return
		}
		top, err := n.Topology()
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		top.Entry[0].ClientsAddr = "192.0.2.1:9000"
		f := top.Entry[0]
		rand.Read(f.Identity[:])
		rand.Read(f.NoiseKey[:])
		f.ClientsAddr = fakeEntryAddr
		top.Entry = append(top.Entry, f)
		st, err := directory.SignTopology(dirPriv, top)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		json.NewEncoder(w).Encode(st)
	})}
	go dirSrv.Serve(dirLn)
	t.Cleanup(func() { dirSrv.Close() })

	d := l.startDaemon(0)
	req := connectRequest{
		DirectoryURL: "http://192.0.2.1:8000",
		DirectoryKey: base64.RawURLEncoding.EncodeToString(dirPriv.Public().(ed25519.PublicKey)),
		Entry:        entry.Identity.String(),
		Profile:      "nodelay",
		KillSwitch:   true,
	}
	if resp, err := call(d.socket, request{Op: "connect", Connect: &req}); err != nil {
		t.Fatalf("connect: %v (%+v)", err, resp)
	}
	t.Cleanup(func() { call(d.socket, request{Op: "disconnect"}) })

	// Nothing on the client names the fake entry's address.
	for what, out := range map[string]string{
		"routes":      run(t, "ip", "-n", l.client, "route", "show", "table", "all"),
		"rules":       run(t, "ip", "-n", l.client, "rule"),
		"kill switch": run(t, "ip", "netns", "exec", l.client, "nft", "list", "table", "inet", platform.KillSwitchTable),
	} {
		if strings.Contains(out, "203.0.113.80") {
			t.Errorf("the fake entry's address is in the client's %s:\n%s", what, out)
		}
	}
	if got := run(t, "ip", "-n", l.client, "route", "get", "203.0.113.80"); !strings.Contains(got, "dev "+tunName) {
		t.Errorf("a plain packet to the fake entry's address is routed %q, not into the tunnel", got)
	}
	// And a plain connection to it does not leave by the uplink.
	if l.poke(fakeEntryAddr) {
		t.Errorf("a plain connection reached the fake entry's address %s", fakeEntryAddr)
	}
	if c := fake(); c != 0 {
		t.Errorf("%d packets to the fake entry's address left the uplink while connected", c)
	}
}
