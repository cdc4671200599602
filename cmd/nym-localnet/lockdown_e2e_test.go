package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLockdownFastMode: with `nymvpn set lockdown on` and auto-connect, in
// fast mode, the client's uplink carries nothing but to the authorities and
// the entries' WireGuard ports, and the internet sees nothing but the exit:
// while disconnected, connected (pages through the tunnel), after kill -9 of
// the daemon, while a fresh daemon auto-connects from the settings, and
// after disconnect. `set lockdown off` then lets the LAN traffic out again.
// The daemon harness (go test -run TestLockdown ./cmd/nymvpn) covers the
// stop, restart and boot cases without a network.
func TestLockdownFastMode(t *testing.T) {
	n := upNet(t, 1)
	entries, _ := n.wgGateways()
	n.nftLoad("client", fastLeakTable(entries))
	n.nftLoad("inet", inetTable)
	n.in("client", 5*time.Second, "curl", "-s", "--max-time", "2", "http://192.0.2.40:8080/")
	if c := n.leakCount("client"); c == 0 {
		t.Fatalf("the leak counter on lan0 did not count a packet sent without the kill switch")
	}
	n.startDaemon()
	// Vouchers first: `nymvpn tickets add` fetches the consensus from a
	// process of its own, which lockdown keeps in, as any other.
	if len(n.vouchers) > 0 {
		n.redeem()
	}
	n.redeemWireGuard()
	if out, err := n.vpn("set", "lockdown", "on"); err != nil || !strings.Contains(out, "lockdown:     on") {
		t.Fatalf("set lockdown on: %v %s", err, out)
	}
	n.resetLeaks("client", "inet")
	stopTraffic := n.outageTraffic()
	defer func() {
		if stopTraffic != nil {
			stopTraffic()
		}
	}()
	noLeaks := func(when string) {
		t.Helper()
		if lan, inet := n.leakCount("client"), n.leakCount("inet"); lan != 0 || inet != 0 {
			t.Fatalf("%s: %d packets left lan0 outside the tunnel, %d reached the internet not from the exit", when, lan, inet)
		}
	}
	// Some of the traffic tried while disconnected under lockdown.
	n.in("client", 5*time.Second, "curl", "-s", "--max-time", "2", "http://192.0.2.40:8080/")
	noLeaks("disconnected, lockdown on")

	n.connect("--mode", "fast")
	page := func(when string) {
		t.Helper()
		out, err := n.in("client", time.Minute, "curl", "-sf", "--max-time", "30", "http://"+e2eInet4+"/")
		if err != nil || !strings.Contains(out, "you are "+e2eExit4+":") {
			t.Fatalf("%s: no page through the exit: %v %q", when, err, out)
		}
	}
	page("connected")
	noLeaks("connected")
	if out, err := n.vpn("set", "auto-connect", "on"); err != nil {
		t.Fatalf("set auto-connect on: %v %s", err, out)
	}

	// kill -9, then a fresh daemon: it takes the killed one's kill switch
	// over, restores its routes and DNS, and auto-connects.
	pidb, err := os.ReadFile(filepath.Join(n.state, "pids", "nymvpn"))
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	fmt.Sscan(string(pidb), &pid)
	if err := syscallKill(pid); err != nil {
		t.Fatalf("kill -9 the daemon: %v", err)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		if _, err := n.vpn("status"); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the daemon still answers after kill -9")
		}
	}
	n.in("client", 5*time.Second, "curl", "-s", "--max-time", "2", "http://"+e2eInet4+"/")
	noLeaks("after kill -9")
	killed := time.Now()
	n.startDaemon()
	var st fastStatus
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(250 * time.Millisecond) {
		if st, err = n.fastStatus(); err == nil && st.State == "connected" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the fresh daemon did not auto-connect within 3 min: %v %+v", err, st)
		}
	}
	t.Logf("a fresh daemon auto-connected %v after kill -9 of the old one", time.Since(killed).Round(time.Millisecond))
	page("auto-connected after kill -9")
	noLeaks("auto-connected after kill -9")

	if out, err := n.vpn("disconnect"); err != nil || !strings.Contains(out, "lockdown") {
		t.Fatalf("disconnect under lockdown: %v %s", err, out)
	}
	if _, err := n.in("client", 10*time.Second, "curl", "-sf", "--max-time", "3", "http://"+e2eInet4+"/"); err == nil {
		t.Error("a page loaded after disconnect under lockdown")
	}
	stopTraffic()
	stopTraffic = nil
	noLeaks("after disconnect")

	if out, err := n.vpn("set", "lockdown", "off"); err != nil {
		t.Fatalf("set lockdown off: %v %s", err, out)
	}
	n.in("client", 5*time.Second, "curl", "-s", "--max-time", "2", "http://192.0.2.40:8080/")
	if n.leakCount("client") == 0 {
		t.Error("after lockdown off nothing leaves lan0: the kill switch stayed")
	}
}
