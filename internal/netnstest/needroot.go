package netnstest

import (
	"os"
	"os/exec"
	"testing"
)

// NeedRoot skips t unless it may make namespaces and TUN devices: not -short,
// root, /dev/net/tun present, and ip plus each of commands on the PATH.
func NeedRoot(t testing.TB, commands ...string) {
	t.Helper()
	if testing.Short() {
		t.Skip("netns test: skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("netns test: needs root (CAP_NET_ADMIN)")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skip("netns test: no /dev/net/tun")
	}
	for _, cmd := range append([]string{"ip"}, commands...) {
		if _, err := exec.LookPath(cmd); err != nil {
			t.Skipf("netns test: no %s command", cmd)
		}
	}
}
