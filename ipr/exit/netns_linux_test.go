package exit_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/vishvananda/netns"

	"github.com/nym-go/nym/internal/netnstest"
)

// needRoot skips a test that needs root, a TUN device and iproute2.
func needRoot(t *testing.T) { t.Helper(); netnstest.NeedRoot(t) }

// ip runs iproute2 and fails the test on error.
func ip(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// newNS creates the network namespace name, removing a stale one left by a
// killed run first, and deletes it when the test ends: that also removes
// every link, TUN and nftables table inside.
func newNS(t *testing.T, name string) netns.NsHandle {
	t.Helper()
	_ = exec.Command("ip", "netns", "del", name).Run()
	ip(t, "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatalf("netns %s: %v", name, err)
	}
	t.Cleanup(func() { h.Close() })
	ip(t, "-n", name, "link", "set", "lo", "up")
	return h
}

// inNS runs fn on an OS thread switched into ns. What fn opens (TUN,
// sockets, netlink and nftables handles) stays bound to ns and may be used
// from any goroutine afterwards; goroutines fn starts do not run in ns.
func inNS(ns netns.NsHandle, fn func() error) error {
	return netnstest.Do(ns, fn)
}
