package platform

import (
	"errors"
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
	state := filepath.Join(t.TempDir(), "state.json")

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
	state := filepath.Join(t.TempDir(), "state.json")
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
	state := filepath.Join(t.TempDir(), "state.json")
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
