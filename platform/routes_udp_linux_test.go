package platform

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRoutesMarkedUDPPassesAStrictReversePathFilter: fast mode's WireGuard
// to the entry is marked UDP from an unconnected socket; its replies arrive
// unmarked and a strict reverse path filter must not drop them as belonging
// to the TUN. (Before the mark was restored for UDP too, the reply from a
// server off the local link was dropped.)
func TestRoutesMarkedUDPPassesAStrictReversePathFilter(t *testing.T) {
	requireNetAdmin(t)
	ns, listing := routeLab(t, "ru")
	router := fmt.Sprintf("plt%d-rug", os.Getpid())
	ipNS(t, router, "addr", "add", "198.51.100.10/32", "dev", "lo")
	var srv net.PacketConn
	mustInNS(t, router, func() (err error) {
		srv, err = net.ListenPacket("udp", "198.51.100.10:51820")
		return err
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			_, from, err := srv.ReadFrom(buf)
			if err != nil {
				return
			}
			srv.WriteTo([]byte(from.String()), from)
		}
	}()
	t.Cleanup(func() { srv.Close(); <-done })

	sh(t, "ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv4.conf.all.rp_filter=1", "net.ipv4.conf.up0.rp_filter=1")
	before := listing()
	cfg := testRouteConfig
	cfg.StatePath = filepath.Join(t.TempDir(), "state", "state.json")
	routes := applyRoutesIn(t, ns, cfg)
	var c net.PacketConn
	mustInNS(t, ns, func() (err error) {
		lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_MARK, testMark) })
			return serr
		}}
		c, err = lc.ListenPacket(t.Context(), "udp4", ":0")
		return err
	})
	defer c.Close()
	server := &net.UDPAddr{IP: net.ParseIP("198.51.100.10"), Port: 51820}
	buf := make([]byte, 256)
	var got string
	for i := 0; i < 3 && got == ""; i++ { // UDP: a lost datagram is tried again
		if _, err := c.WriteTo([]byte("hello"), server); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if n, _, err := c.ReadFrom(buf); err == nil {
			got = string(buf[:n])
		}
	}
	if !strings.HasPrefix(got, "192.0.2.2:") {
		t.Errorf("no answer to marked UDP from a server beyond the default route under rp_filter=1 (got %q)", got)
	}
	if err := routes.Remove(); err != nil {
		t.Fatal(err)
	}
	if after := listing(); after != before {
		t.Errorf("not restored:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}
