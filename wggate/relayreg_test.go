package wggate

import (
	"context"
	"net/netip"
	"sync"
	"testing"

	"golang.zx2c4.com/wireguard/tun/netstack"

	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/wgreg"
)

// exitInternet is the address of the exit's userspace internet (startExit).
var exitInternet = netip.MustParseAddr("198.51.100.2")

// startExit runs an exit on listen over a userspace TUN (no exit
// networking) whose stack is the internet at exitInternet, and returns it
// with its topology entry and that stack.
func startExit(t testing.TB, listen netip.Addr, mutate func(*Config)) (*Gateway, directory.Node, *netstack.Net) {
	t.Helper()
	k := newTestKeys(t)
	dev, inet, err := netstack.CreateNetTUN([]netip.Addr{exitInternet}, nil, DefaultExitMTU)
	if err != nil {
		t.Fatal(err)
	}
	cfg := k.config(wgreg.RoleExit, netip.AddrPortFrom(listen, 0))
	cfg.ExitDevice = dev
	cfg.FlushConntrack = func(...netip.Addr) (int, error) { return 0, nil }
	if mutate != nil {
		mutate(&cfg)
	}
	g, err := New(cfg)
	if err != nil {
		dev.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	announce := listen
	if announce.IsUnspecified() {
		announce = netip.MustParseAddr("127.0.0.1")
	}
	return g, k.node(netip.AddrPortFrom(announce, g.Port())), inet
}

// TestManyClientsRegisterThroughOneEntry: clients registering with an
// exit at the same moment through one entry all get in. Every relayed
// registration is a link of its own from the entry's address; before the
// exit raised its per-address handshake bound for its fellow gateways, the
// ninth at once failed with "exit unreachable".
func TestManyClientsRegisterThroughOneEntry(t *testing.T) {
	const clients = 24
	entry, entryNode, _ := startEntry(t, func(c *Config) { c.MaxPeersPerIP = clients })
	exit, exitNode, _ := startExit(t, netip.MustParseAddr("127.0.0.1"), nil)
	topo := &directory.Topology{Rotation: testRotation, Entry: []directory.Node{entryNode}, Exit: []directory.Node{exitNode}}
	entry.Update(topo)
	exit.Update(topo)

	// Sessions with the entry one after the other (the clients share an
	// address, which the entry bounds), then the exit's registrations all
	// at once.
	ctx := context.Background()
	sessions := make([]*wgreg.Session, clients)
	for i := range sessions {
		_, s, err := wgreg.RegisterEntry(ctx, entryNode, wgKey(t), wgreg.Options{Rotation: testRotation})
		if err != nil {
			t.Fatalf("client %d at the entry: %v", i, err)
		}
		defer s.Close()
		sessions[i] = s
	}
	start := make(chan struct{})
	errs := make([]error, clients)
	var wg sync.WaitGroup
	for i, s := range sessions {
		wg.Go(func() {
			<-start
			_, errs[i] = s.RegisterExit(ctx, exitNode, wgKey(t))
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("client %d at the exit: %v", i, err)
		}
	}
	if exit.Peers() != clients {
		t.Fatalf("%d peers at the exit, want %d", exit.Peers(), clients)
	}
}

// TestRelayHandshakeBoundOnlyForGateways: the exit raises the handshake
// bound only for its gateways' addresses; any other address keeps the
// link's per-address bound, the guard against one host's flood.
func TestRelayHandshakeBoundOnlyForGateways(t *testing.T) {
	entry, entryNode, _ := startEntry(t, nil)
	exit, exitNode, _ := startExit(t, netip.MustParseAddr("127.0.0.1"), func(c *Config) { c.MaxRelayHandshakes = 40 })
	entryNode.WGAddr = "192.0.2.7:51820"
	entryNode.MixnetAddr = "[2001:db8::7]:1789"
	topo := &directory.Topology{Rotation: testRotation, Entry: []directory.Node{entryNode}, Exit: []directory.Node{exitNode}}
	entry.Update(topo)
	exit.Update(topo)
	for src, want := range map[string]int{
		"192.0.2.7/32":    40,
		"2001:db8::/64":   40,
		"127.0.0.1/32":    40, // the exit itself is a gateway too
		"192.0.2.8/32":    0,  // 0: link.DefaultMaxHandshakesPerIP
		"198.51.100.7/32": 0,
		"2001:db8:1::/64": 0,
	} {
		if got := exit.maxHandshakesFrom(netip.MustParsePrefix(src)); got != want {
			t.Errorf("exit's bound for %s = %d, want %d", src, got, want)
		}
		if got := entry.maxHandshakesFrom(netip.MustParsePrefix(src)); got != 0 {
			t.Errorf("entry's bound for %s = %d, want 0: an entry takes no relayed registrations", src, got)
		}
	}
}
