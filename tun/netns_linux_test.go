package tun

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/nym-go/nym/internal/netnstest"
)

// requireRoot skips tests that create namespaces and TUN devices unless
// they can.
func requireRoot(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("skipping root test in -short mode")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_NET_ADMIN) to create network namespaces and TUN devices")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("needs /dev/net/tun: %v", err)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs the ip command (iproute2)")
	}
}

// newNetns creates a network namespace named tunt<pid>-<suffix> (unique
// per test process, at most 15 bytes), deleting a stale one of that name
// first, and deletes it when the test ends. Deleting the namespace removes
// every link inside it.
func newNetns(t testing.TB, suffix string) string {
	t.Helper()
	name := fmt.Sprintf("tunt%d-%s", os.Getpid(), suffix)
	if len(name) > 15 {
		t.Fatalf("namespace name %q longer than 15 bytes", name)
	}
	exec.Command("ip", "netns", "del", name).Run() // a leftover from a killed run
	ipCmd(t, "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	return name
}

// ipCmd runs ip with args and fails the test on error.
func ipCmd(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// inNetns runs fn on an OS thread switched into namespace ns. Sockets and
// devices fn opens stay in ns and may be used from any goroutine after;
// goroutines fn starts do not run in ns.
func inNetns(ns string, fn func() error) error {
	return netnstest.DoNamed(ns, fn)
}
