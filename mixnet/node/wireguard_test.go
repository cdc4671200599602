package node_test

import (
	"context"
	"crypto/rand"
	"net/netip"
	"testing"

	"github.com/nym-go/nym/internal/testnet"
	"github.com/nym-go/nym/mixnet/node"
	"github.com/nym-go/nym/wgreg"
)

// TestEntryGatewayServesWireGuard runs an entry gateway with a WireGuard
// door: it announces wg_addr, and a client registers there with the key
// the consensus lists (an exit's door needs root and a TUN: see wggate's
// namespace test).
func TestEntryGatewayServesWireGuard(t *testing.T) {
	net := testnet.Start(t, testnet.Options{EditNode: func(c *node.Config) {
		if c.Mode == node.ModeEntryGateway {
			c.WireGuardListen = "127.0.0.1:0"
		}
	}})
	topo, err := net.Topology()
	if err != nil {
		t.Fatal(err)
	}
	if len(topo.Entry) != 1 {
		t.Fatalf("%d entries", len(topo.Entry))
	}
	entry := topo.Entry[0]
	ep, ok := entry.WGAddrPort()
	if !ok || ep.Addr() != netip.MustParseAddr("127.0.0.1") || ep.Port() == 0 {
		t.Fatalf("entry announces wg_addr %q", entry.WGAddr)
	}
	if len(topo.Exit) != 1 || topo.Exit[0].WGAddr != "" {
		t.Fatalf("the exit, without a door, announces %q", topo.Exit[0].WGAddr)
	}
	var key [32]byte
	rand.Read(key[:])
	reg, s, err := wgreg.RegisterEntry(context.Background(), entry, key, wgreg.Options{Rotation: topo.Rotation})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !reg.AddrV4.IsValid() || reg.Endpoint != ep || reg.PSK == [32]byte{} {
		t.Fatalf("registration %+v", reg)
	}
	// Relaying to an exit without a door is refused, not hung.
	if _, err := s.RegisterExit(context.Background(), topo.Exit[0], key); err == nil {
		t.Fatal("registered with an exit that runs no WireGuard")
	}
}

func TestWireGuardSettingsChecked(t *testing.T) {
	for name, edit := range map[string]func(*node.Config){
		"by name":      func(c *node.Config) { c.WireGuardListen = "localhost:51820" },
		"bad range":    func(c *node.Config) { c.WireGuardListen, c.WireGuardRangeV4 = "127.0.0.1:51820", "10.1.0.0" },
		"negative cap": func(c *node.Config) { c.WireGuardListen, c.WireGuardMaxFlows = "127.0.0.1:51820", -1 },
	} {
		c := node.DefaultConfig()
		c.DataDir, c.Mode = t.TempDir(), node.ModeEntryGateway
		c.DirectoryURL, c.DirectoryKey = "http://127.0.0.1:1", "AAAA"
		edit(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	c := node.DefaultConfig()
	c.DataDir, c.Mode, c.WireGuardListen = t.TempDir(), node.ModeExitGateway, "192.0.2.1:51820"
	c.DirectoryURL, c.DirectoryKey = "http://127.0.0.1:1", "AAAA"
	if err := c.Validate(); err != nil {
		t.Fatalf("good settings refused: %v", err)
	}
	if tun, ranges, ok := c.WireGuardExitDoor(); !ok || tun != "nymwg0" || len(ranges) != 2 || ranges[0].String() != "10.1.0.0/16" {
		t.Fatalf("exit door %q %v %v", tun, ranges, ok)
	}
}
