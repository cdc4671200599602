package platform

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/ipv6"

	"github.com/nym-go/nym/internal/netnstest"
)

// killSwitchLab is a client namespace linked to a "world" namespace that
// holds two gateways (192.0.2.1 and 192.0.2.3) and other hosts on the same
// link.
func killSwitchLab(t *testing.T, suffix string) (client, world string) {
	client = newNS(t, suffix)
	world = newNS(t, suffix+"w")
	vethPair(t, client, "c0", world, "w0")
	ipNS(t, client, "addr", "add", "192.0.2.2/24", "dev", "c0")
	ipNS(t, world, "addr", "add", "192.0.2.1/24", "dev", "w0")
	ipNS(t, world, "addr", "add", "192.0.2.3/24", "dev", "w0")
	ipNS(t, world, "addr", "add", "192.0.2.4/24", "dev", "w0")
	return client, world
}

func gateway(addr string, port uint16, p Protocol) Endpoint {
	return Endpoint{Addr: netip.AddrPortFrom(netip.MustParseAddr(addr), port), Protocol: p}
}

func TestKillSwitchDropsEverythingButTheTunnelAndTheGateway(t *testing.T) {
	requireNetAdmin(t)
	client, world := killSwitchLab(t, "k")
	listenIn(t, world, "192.0.2.1:443")
	listenIn(t, world, "192.0.2.1:8080")
	listenIn(t, world, "192.0.2.3:443")
	sink := newUDPSink(t, world, "192.0.2.4:5000")
	// An unrelated table that must survive, and the host's ruleset.
	sh(t, "ip", "netns", "exec", client, "nft", "add table inet other; add chain inet other c { type filter hook output priority 10; }")
	rulesetBefore := nftRuleset(t, client)
	hostBefore := nftRuleset(t, "")
	state := filepath.Join(t.TempDir(), "state", "state.json")

	// Before: everything reachable, so the checks below can fail.
	if _, err := dialIn(t, client, "tcp", "192.0.2.1:8080", time.Second); err != nil {
		t.Fatalf("lab broken: %v", err)
	}

	var ks *KillSwitch
	mustInNS(t, client, func() error {
		var err error
		ks, err = EnableKillSwitch(state, KillSwitchRules{TUN: "nymvpn0", Allowed: []Endpoint{gateway("192.0.2.1", 443, TCP)}})
		return err
	})
	t.Cleanup(func() { ks.Close() })

	if _, err := dialIn(t, client, "tcp", "192.0.2.1:443", time.Second); err != nil {
		t.Errorf("gateway blocked: %v", err)
	}
	if _, err := dialIn(t, client, "tcp", "192.0.2.1:8080", 300*time.Millisecond); err == nil {
		t.Errorf("TCP to a port of the gateway that is not allowed got through")
	}
	if _, err := dialIn(t, client, "tcp", "192.0.2.3:443", 300*time.Millisecond); err == nil {
		t.Errorf("TCP to another host got through")
	}
	udp := udpSocketIn(t, client)
	for range 5 {
		_, err := udp.WriteTo([]byte("leak"), &net.UDPAddr{IP: net.ParseIP("192.0.2.4"), Port: 5000})
		if err != nil && !errors.Is(err, syscall.EPERM) {
			t.Errorf("UDP send: %v, want success or EPERM", err)
		}
	}
	if n := sink.received(200 * time.Millisecond); n != 0 {
		t.Errorf("%d UDP datagrams leaked past the kill switch", n)
	}
	dropped, err := ks.Dropped()
	if err != nil {
		t.Fatal(err)
	}
	// 5 datagrams plus at least one SYN for each of the two TCP attempts.
	if dropped.Output.Packets < 7 {
		t.Errorf("drop counter = %+v, want at least 7 packets", dropped.Output)
	}
	lo := listenIn(t, client, "127.0.0.1:0")
	if _, err := dialIn(t, client, "tcp", lo.Addr().String(), time.Second); err != nil {
		t.Errorf("loopback blocked: %v", err)
	}

	if err := ks.Disable(); err != nil {
		t.Fatal(err)
	}
	if got := nftRuleset(t, client); got != rulesetBefore {
		t.Errorf("ruleset after Disable:\n%s\nwant:\n%s", got, rulesetBefore)
	}
	if got := nftRuleset(t, ""); got != hostBefore {
		t.Errorf("host ruleset changed:\n%s\nwas:\n%s", got, hostBefore)
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("state file left after Disable: %v", err)
	}
	if _, err := udp.WriteTo([]byte("free"), &net.UDPAddr{IP: net.ParseIP("192.0.2.4"), Port: 5000}); err != nil {
		t.Fatal(err)
	}
	if n := sink.received(time.Second); n != 1 {
		t.Errorf("after Disable %d datagrams arrived, want 1", n)
	}
}

// TestKillSwitchUpdateHasNoGap moves the allowed endpoint back and forth
// while a sender fires at an address that is never allowed, and a TCP
// connection to the gateway common to both sets stays in use.
func TestKillSwitchUpdateHasNoGap(t *testing.T) {
	requireNetAdmin(t)
	client, world := killSwitchLab(t, "ku")
	listenIn(t, world, "192.0.2.1:443")
	listenIn(t, world, "192.0.2.3:443")
	sink := newUDPSink(t, world, "192.0.2.4:5000")
	state := filepath.Join(t.TempDir(), "state", "state.json")
	first := KillSwitchRules{Allowed: []Endpoint{gateway("192.0.2.1", 443, TCP), gateway("192.0.2.1", 0, UDP)}}
	second := KillSwitchRules{Allowed: []Endpoint{gateway("192.0.2.3", 443, TCP), gateway("192.0.2.1", 0, UDP)}}
	common := newUDPSink(t, world, "192.0.2.1:6000")

	var ks *KillSwitch
	mustInNS(t, client, func() error {
		var err error
		ks, err = EnableKillSwitch(state, first)
		return err
	})
	t.Cleanup(func() { ks.Disable() })

	udp := udpSocketIn(t, client)
	var stop atomic.Bool
	var sent, sentCommon atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the socket is bound to the namespace; this goroutine need not be
		defer wg.Done()
		for !stop.Load() {
			udp.WriteTo([]byte("leak"), &net.UDPAddr{IP: net.ParseIP("192.0.2.4"), Port: 5000})
			sent.Add(1)
			if _, err := udp.WriteTo([]byte("ok"), &net.UDPAddr{IP: net.ParseIP("192.0.2.1"), Port: 6000}); err == nil {
				sentCommon.Add(1)
			}
		}
	}()
	for i := range 100 {
		rules := first
		if i%2 == 0 {
			rules = second
		}
		if err := ks.Update(rules); err != nil {
			stop.Store(true)
			wg.Wait()
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()

	if n := sink.received(200 * time.Millisecond); n != 0 {
		t.Errorf("%d of %d datagrams leaked during updates", n, sent.Load())
	}
	// Every datagram to the endpoint allowed in both sets was accepted by
	// the kernel (a drop would have returned EPERM).
	if sentCommon.Load() != sent.Load() {
		t.Errorf("endpoint allowed throughout was blocked %d of %d times during updates", sent.Load()-sentCommon.Load(), sent.Load())
	}
	if n := common.received(200 * time.Millisecond); n == 0 {
		t.Errorf("nothing reached the endpoint allowed throughout")
	}
	dropped, err := ks.Dropped()
	if err != nil {
		t.Fatal(err)
	}
	if dropped.Output.Packets < uint64(sent.Load()) {
		t.Errorf("drop counter %d < %d datagrams sent to a blocked address (counters lost on update?)", dropped.Output.Packets, sent.Load())
	}
	t.Logf("%d datagrams blocked across 100 updates", sent.Load())

	// The last update left "first": the old gateway works, the new one not.
	if _, err := dialIn(t, client, "tcp", "192.0.2.1:443", time.Second); err != nil {
		t.Errorf("gateway of the current rules blocked: %v", err)
	}
	if _, err := dialIn(t, client, "tcp", "192.0.2.3:443", 300*time.Millisecond); err == nil {
		t.Errorf("gateway of the replaced rules still reachable")
	}
}

// TestKillSwitchOutlivesItsProcess checks that Close keeps the rules, that
// Restore removes them, and that a new Enable takes over the table.
func TestKillSwitchOutlivesItsProcess(t *testing.T) {
	requireNetAdmin(t)
	client, world := killSwitchLab(t, "kc")
	sink := newUDPSink(t, world, "192.0.2.4:5000")
	before := nftRuleset(t, client)
	state := filepath.Join(t.TempDir(), "state", "state.json")
	rules := KillSwitchRules{Allowed: []Endpoint{gateway("192.0.2.1", 443, TCP)}}
	mustInNS(t, client, func() error {
		ks, err := EnableKillSwitch(state, rules)
		if err != nil {
			return err
		}
		return ks.Close()
	})
	if got := nftRuleset(t, client); !strings.Contains(got, "table inet "+KillSwitchTable) {
		t.Fatalf("Close removed the kill switch:\n%s", got)
	}
	// A restarted daemon enables it again, replacing the old table.
	var ks *KillSwitch
	mustInNS(t, client, func() error {
		var err error
		ks, err = EnableKillSwitch(state, rules)
		return err
	})
	ks.Close()
	if got := nftRuleset(t, client); strings.Count(got, "table inet "+KillSwitchTable) != 1 {
		t.Fatalf("want one kill switch table:\n%s", got)
	}
	udp := udpSocketIn(t, client)
	udp.WriteTo([]byte("leak"), &net.UDPAddr{IP: net.ParseIP("192.0.2.4"), Port: 5000})
	if n := sink.received(200 * time.Millisecond); n != 0 {
		t.Errorf("leak with the kill switch left by a closed process")
	}

	if err := RestoreKeepingKillSwitch(state); err != nil {
		t.Fatal(err)
	}
	if got := nftRuleset(t, client); !strings.Contains(got, KillSwitchTable) {
		t.Errorf("RestoreKeepingKillSwitch removed the kill switch")
	}
	mustInNS(t, client, func() error { return Restore(state) })
	if got := nftRuleset(t, client); got != before {
		t.Errorf("Restore left:\n%s\nwant:\n%s", got, before)
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("state file left after Restore: %v", err)
	}
}

// TestKillSwitchLetsLocalLinkTrafficOnlyOnTheLink: DHCP and neighbour
// discovery are let out only towards the local link (the broadcast address,
// link-local and multicast addresses with hop limit 255), not to any
// address that takes the right port or ICMPv6 type. Counted by a table of
// the test after the kill switch (postrouting), which counts both before
// the kill switch is on to prove it can.
func TestKillSwitchLetsLocalLinkTrafficOnlyOnTheLink(t *testing.T) {
	requireNetAdmin(t)
	client, world := killSwitchLab(t, "kl")
	ipNS(t, client, "addr", "add", "2001:db8:7::2/64", "dev", "c0", "nodad")
	ipNS(t, world, "addr", "add", "2001:db8:7::1/64", "dev", "w0", "nodad")
	sh(t, "ip", "netns", "exec", client, "nft", `add table inet ll_count
		add counter inet ll_count dhcp_bcast
		add counter inet ll_count dhcp_other
		add counter inet ll_count nd_mcast
		add counter inet ll_count nd_other
		add chain inet ll_count post { type filter hook postrouting priority 500; }
		add rule inet ll_count post oifname "c0" ip daddr 255.255.255.255 udp dport 67 counter name dhcp_bcast
		add rule inet ll_count post oifname "c0" ip daddr 192.0.2.4 udp dport 67 counter name dhcp_other
		add rule inet ll_count post oifname "c0" ip6 daddr ff02::1 icmpv6 type nd-neighbor-advert counter name nd_mcast
		add rule inet ll_count post oifname "c0" ip6 daddr 2001:db8:7::1 icmpv6 type nd-neighbor-advert counter name nd_other`)
	count := func(name string) int64 {
		out := sh(t, "ip", "netns", "exec", client, "nft", "list", "counter", "inet", "ll_count", name)
		var n int64
		if i := strings.Index(out, "packets "); i >= 0 {
			fmt.Sscan(out[i+len("packets "):], &n)
		}
		return n
	}
	var dhcp *net.UDPConn
	var icmp *ipv6.PacketConn
	mustInNS(t, client, func() error {
		lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			c.Control(func(fd uintptr) {
				// As DHCP clients do: bound to the link, broadcast allowed.
				serr = errors.Join(syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_BROADCAST, 1),
					syscall.BindToDevice(int(fd), "c0"))
			})
			return serr
		}}
		pc, err := lc.ListenPacket(context.Background(), "udp4", "0.0.0.0:68")
		if err != nil {
			return err
		}
		dhcp = pc.(*net.UDPConn)
		raw, err := net.ListenPacket("ip6:ipv6-icmp", "::")
		if err != nil {
			return err
		}
		icmp = ipv6.NewPacketConn(raw)
		return errors.Join(icmp.SetHopLimit(255), icmp.SetMulticastHopLimit(255), icmp.SetMulticastInterface(mustIface(client, "c0")))
	})
	t.Cleanup(func() { dhcp.Close(); icmp.Close() })
	// A neighbour advertisement for 2001:db8:7::2 (type 136, no options).
	na := []byte{136, 0, 0, 0, 0x20, 0, 0, 0, 0x20, 0x01, 0x0d, 0xb8, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2}
	send := func() {
		dhcp.WriteTo([]byte("dhcp"), &net.UDPAddr{IP: net.IPv4bcast, Port: 67})
		dhcp.WriteTo([]byte("dhcp"), &net.UDPAddr{IP: net.ParseIP("192.0.2.4"), Port: 67})
		icmp.WriteTo(na, nil, &net.IPAddr{IP: net.ParseIP("ff02::1"), Zone: "c0"})
		icmp.WriteTo(na, nil, &net.IPAddr{IP: net.ParseIP("2001:db8:7::1")})
	}
	names := []string{"dhcp_bcast", "dhcp_other", "nd_mcast", "nd_other"}
	// Without the kill switch every one is counted: the counters work.
	send()
	for _, n := range names {
		if c := count(n); c == 0 {
			t.Fatalf("counter %s did not count without the kill switch", n)
		}
	}
	sh(t, "ip", "netns", "exec", client, "nft", "reset counters table inet ll_count")

	state := filepath.Join(t.TempDir(), "state", "state.json")
	var ks *KillSwitch
	mustInNS(t, client, func() error {
		var err error
		ks, err = EnableKillSwitch(state, KillSwitchRules{TUN: "nymvpn0"})
		return err
	})
	t.Cleanup(func() { ks.Disable() })
	for range 3 {
		send()
	}
	if c := count("dhcp_other"); c != 0 {
		t.Errorf("%d DHCP requests to a unicast address (not the link's broadcast) passed the kill switch", c)
	}
	if c := count("nd_other"); c != 0 {
		t.Errorf("%d neighbour advertisements to a global address passed the kill switch", c)
	}
	// (A broadcast or multicast packet is counted twice: the copy looped
	// back to this host passes postrouting too.)
	if c := count("dhcp_bcast"); c < 3 {
		t.Errorf("%d of 3 broadcast DHCP requests passed the kill switch", c)
	}
	if c := count("nd_mcast"); c < 3 {
		t.Errorf("%d of 3 neighbour advertisements to ff02::1 passed the kill switch", c)
	}
}

// mustIface looks up an interface of namespace ns.
func mustIface(ns, name string) *net.Interface {
	var ifi *net.Interface
	netnstest.DoNamed(ns, func() error {
		var err error
		ifi, err = net.InterfaceByName(name)
		return err
	})
	return ifi
}

// TestKillSwitchWithAMarkLetsOnlyMarkedSocketsOut: with Mark set, the
// allowed endpoint is reachable by the VPN's own (marked) sockets only; a
// plain socket of any other process is dropped even to that endpoint.
func TestKillSwitchWithAMarkLetsOnlyMarkedSocketsOut(t *testing.T) {
	requireNetAdmin(t)
	client, world := killSwitchLab(t, "km")
	listenIn(t, world, "192.0.2.1:443")
	state := filepath.Join(t.TempDir(), "state", "state.json")
	var ks *KillSwitch
	mustInNS(t, client, func() error {
		var err error
		ks, err = EnableKillSwitch(state, KillSwitchRules{TUN: "nymvpn0", Mark: testMark,
			Allowed: []Endpoint{gateway("192.0.2.1", 443, TCP)}})
		return err
	})
	t.Cleanup(func() { ks.Disable() })
	if _, err := dialIn(t, client, "tcp", "192.0.2.1:443", 300*time.Millisecond); err == nil {
		t.Errorf("an unmarked socket reached the allowed endpoint")
	}
	c, err := dialMarkedIn(t, client, "192.0.2.1:443", testMark, 5*time.Second)
	if err != nil {
		t.Fatalf("a marked socket did not reach the allowed endpoint: %v", err)
	}
	if got := readLine(t, c); got == "" {
		t.Errorf("no answer over the marked connection")
	}
}
