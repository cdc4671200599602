package netmon

import (
	"crypto/rand"
	"encoding/hex"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/nym-go/nym/internal/netnstest"
)

// testNS is a namespace of the test's own with a veth pair up0/peer0 in it:
// up0 is the uplink, peer0 its far end (taking it down is the cable
// pulled).
type testNS struct {
	t    *testing.T
	name string
	h    netns.NsHandle
}

func newTestNS(t *testing.T) *testNS {
	t.Helper()
	netnstest.NeedRoot(t)
	b := make([]byte, 4)
	rand.Read(b)
	n := &testNS{t: t, name: "nmtest-" + hex.EncodeToString(b)}
	if out, err := exec.Command("ip", "netns", "add", n.name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", n.name).Run() })
	h, err := netns.GetFromName(n.name)
	if err != nil {
		t.Fatal(err)
	}
	n.h = h
	t.Cleanup(func() { h.Close() })
	n.ip("link add up0 type veth peer name peer0",
		"link set peer0 up",
		"link set up0 up",
		"link set lo up")
	return n
}

// ip runs ip commands in the namespace, all in one batch (one process, so
// the steps of one change come quickly one after the other).
func (n *testNS) ip(cmds ...string) {
	n.t.Helper()
	c := exec.Command("ip", "-n", n.name, "-batch", "-")
	c.Stdin = strings.NewReader(strings.Join(cmds, "\n") + "\n")
	if out, err := c.CombinedOutput(); err != nil {
		n.t.Fatalf("ip %q: %v %s", cmds, err, out)
	}
}

func (n *testNS) monitor(ignore ...string) *Monitor {
	n.t.Helper()
	m, err := New(Config{Namespace: &n.h, Ignore: ignore})
	if err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(func() { m.Close() })
	return m
}

// next waits for the next Event (generously: the machine may be busy).
func next(t *testing.T, m *Monitor) Event {
	t.Helper()
	select {
	case ev := <-m.Changes():
		t.Logf("event: %s -> %s", ev.Old, ev.New)
		return ev
	case <-time.After(30 * time.Second):
		t.Fatalf("no event within 30 s; uplink now %s", m.Current())
		return Event{}
	}
}

func addrs(s ...string) []netip.Addr {
	var a []netip.Addr
	for _, x := range s {
		a = append(a, netip.MustParseAddr(x))
	}
	return a
}

func TestUplinkComesGoesChanges(t *testing.T) {
	n := newTestNS(t)
	m := n.monitor()
	if u := m.Current(); u.Usable() {
		t.Fatalf("a fresh namespace has an uplink: %s", u)
	}

	// Connected: an address and a default route.
	n.ip("addr add 192.0.2.2/24 dev up0", "route add default via 192.0.2.1 dev up0")
	ev := next(t, m)
	want4 := Route{Link: "up0", Index: ev.New.V4.Index, Gateway: netip.MustParseAddr("192.0.2.1"), Addrs: addrs("192.0.2.2")}
	if !ev.Up() || ev.Old.Usable() || !ev.New.V4.Equal(want4) || ev.New.V4.Index == 0 || ev.New.V6.Usable() {
		t.Fatalf("after connecting: %s -> %s (up %v); want v4 %s", ev.Old, ev.New, ev.Up(), want4)
	}

	// The cable pulled: the far end goes down, up0 loses its carrier;
	// the kernel keeps the route but marks it linkdown.
	n.ip("link set peer0 down")
	if ev = next(t, m); ev.Up() || ev.New.Usable() || !ev.Old.V4.Equal(want4) {
		t.Fatalf("cable pulled: %s -> %s (up %v); want the uplink gone", ev.Old, ev.New, ev.Up())
	}
	n.ip("link set peer0 up")
	if ev = next(t, m); !ev.Up() || !ev.New.V4.Equal(want4) {
		t.Fatalf("cable back: %s -> %s; want %s", ev.Old, ev.New, want4)
	}

	// The link taken down (suspend): the kernel removes its routes; a
	// DHCP client adds the default route again once it is up.
	n.ip("link set up0 down")
	if ev = next(t, m); ev.New.Usable() {
		t.Fatalf("link down: %s -> %s; want no uplink", ev.Old, ev.New)
	}
	n.ip("link set up0 up", "route add default via 192.0.2.1 dev up0")
	if ev = next(t, m); !ev.Up() || !ev.New.V4.Equal(want4) {
		t.Fatalf("link up again: %s -> %s; want %s", ev.Old, ev.New, want4)
	}

	// Another Wi-Fi network: new address, new gateway, in one row of
	// changes that makes one event from the old uplink to the new.
	n.ip("addr del 192.0.2.2/24 dev up0",
		"addr add 198.51.100.7/24 dev up0",
		"route add default via 198.51.100.1 dev up0")
	want4b := Route{Link: "up0", Index: want4.Index, Gateway: netip.MustParseAddr("198.51.100.1"), Addrs: addrs("198.51.100.7")}
	ev = next(t, m)
	if !ev.Up() || !ev.Old.V4.Equal(want4) || !ev.New.V4.Equal(want4b) {
		// On a very busy machine the row may be split at the settle
		// time; then the next event must finish it.
		if ev.Old.V4.Equal(want4) && !ev.New.V4.Equal(want4b) {
			t.Logf("the change came in two events")
			ev = next(t, m)
		}
		if !ev.Up() || !ev.New.V4.Equal(want4b) {
			t.Fatalf("Wi-Fi switch: %s -> %s; want v4 %s", ev.Old, ev.New, want4b)
		}
	}

	// IPv6 joins; the v4 uplink stays as it is.
	n.ip("addr add 2001:db8::7/64 dev up0 nodad", "route add default via 2001:db8::1 dev up0")
	ev = next(t, m)
	want6 := Route{Link: "up0", Index: want4.Index, Gateway: netip.MustParseAddr("2001:db8::1"), Addrs: addrs("2001:db8::7")}
	if !ev.Up() || !ev.New.V6.Equal(want6) || !ev.New.V4.Equal(want4b) {
		t.Fatalf("IPv6 added: %s -> %s; want v6 %s", ev.Old, ev.New, want6)
	}
}

// TestIgnoredLinkAndOtherTables: the tunnel's TUN and routes outside the
// main table (where the tunnel's default routes live) are no uplink, and
// a route of a lower metric wins.
func TestIgnoredLinkAndOtherTables(t *testing.T) {
	n := newTestNS(t)
	n.ip("addr add 192.0.2.2/24 dev up0", "route add default via 192.0.2.1 dev up0 metric 100",
		"link add tun9 type veth peer name tun9p", "link set tun9p up", "link set tun9 up", "addr add 203.0.113.9/32 dev tun9")
	m := n.monitor("tun9")
	base := m.Current()
	if base.V4.Link != "up0" {
		t.Fatalf("uplink %s; want up0", base)
	}
	// None of these is a change of the uplink: a default route of a
	// lower metric out of the ignored link, one in another table.
	n.ip("route add default dev tun9 metric 10", "route add default dev tun9 table 51820")
	// A second uplink of a higher metric: no change either. Then one of
	// a lower metric: the uplink becomes it, and the event's Old shows
	// nothing changed before.
	n.ip("link add up1 type veth peer name up1p", "link set up1p up", "link set up1 up", "addr add 198.51.100.2/24 dev up1",
		"route add default via 198.51.100.1 dev up1 metric 200")
	n.ip("route replace default via 198.51.100.1 dev up1 metric 50")
	ev := next(t, m)
	if !ev.Old.Equal(base) {
		t.Errorf("an ignored or non-main route changed the uplink: %s -> %s", base, ev.Old)
	}
	if ev.New.V4.Link != "up1" || !slices.Equal(ev.New.V4.Addrs, addrs("198.51.100.2")) || !ev.Up() {
		t.Errorf("a lower metric's route: %s -> %s; want up1", ev.Old, ev.New)
	}
}
