package main

import (
	"net/netip"
	"testing"
	"time"
)

func TestRefusalsWakeOnlyTheirDestination(t *testing.T) {
	var r refusals
	smtp := netip.MustParseAddrPort("198.51.100.2:25")
	web := netip.MustParseAddrPort("198.51.100.2:80")
	refusedCh, stopA := r.wait(smtp)
	defer stopA()
	okCh, stopB := r.wait(web)
	r.refused(netip.AddrPortFrom(netip.MustParseAddr("::ffff:198.51.100.2"), 25)) // mapped form, as a v6 Info may carry
	select {
	case <-refusedCh:
	case <-time.After(time.Second):
		t.Fatal("the refused destination's dial was not woken")
	}
	select {
	case <-okCh:
		t.Fatal("another destination's dial was woken")
	default:
	}
	stopB()
	if len(r.waiters) != 0 {
		t.Fatalf("%d destinations still waited on", len(r.waiters))
	}
}
