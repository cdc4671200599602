package platform

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// cgroup2MountForTest is where the host mounts the cgroup v2 hierarchy,
// for looking at the group from outside as a user would.
func cgroup2MountForTest(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("findmnt", "-n", "-t", "cgroup2", "-o", "TARGET").Output()
	mount, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	if err != nil || mount == "" {
		t.Skipf("split tunnel test: no cgroup2 hierarchy mounted (findmnt: %v)", err)
	}
	return mount
}

// fetchIn connects from namespace ns (by nsenter, which keeps the host's
// mounts) to addr:port with bash and returns the server's first line, the
// address it saw. With group set, the bash first joins that cgroup.
func fetchIn(ns, group, addr, port string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	script := `exec 3<>/dev/tcp/$A/$P && read -r l <&3 && echo "$l"`
	if group != "" {
		script = `echo $$ > "$G/cgroup.procs" && ` + script
	}
	cmd := exec.CommandContext(ctx, "nsenter", "--net=/run/netns/"+ns, "bash", "-c", script)
	cmd.Env = append(os.Environ(), "A="+addr, "P="+port, "G="+group)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// TestSplitTunnelExcludesTheGroupAlone: with the tunnel's routes, the split
// table and the kill switch in place, a program in the exclusion group
// reaches a server off the uplink's link by the uplink (the server sees the
// uplink's address); the same program outside the group does not, nor does
// a socket that merely carries the tunnel's mark; a user cannot join the
// group; Remove takes the group and the table away and moves its programs
// out.
func TestSplitTunnelExcludesTheGroupAlone(t *testing.T) {
	requireNetAdmin(t)
	mount := cgroup2MountForTest(t)
	if _, err := exec.LookPath("nsenter"); err != nil {
		t.Skip("split tunnel test: needs nsenter")
	}
	client, world := killSwitchLab(t, "x")
	ipNS(t, world, "addr", "add", "198.51.100.1/32", "dev", "w0")
	ipNS(t, client, "route", "add", "default", "via", "192.0.2.1")
	ipNS(t, client, "tuntap", "add", "dev", "nymvpn0", "mode", "tun")
	listenIn(t, world, "198.51.100.1:80")
	state := filepath.Join(t.TempDir(), "state", "state.json")

	// Before: the server is reachable by the default route.
	if got, err := fetchIn(client, "", "198.51.100.1", "80", 10*time.Second); err != nil || !strings.HasPrefix(got, "192.0.2.2:") {
		t.Fatalf("lab broken: %q, %v", got, err)
	}

	cfg := testRouteConfig
	cfg.StatePath = state
	cfg.Addresses = []netip.Prefix{netip.MustParsePrefix("10.0.0.7/32")}
	routes := applyRoutesIn(t, client, cfg)
	t.Cleanup(func() { routes.Remove() })
	var sp *Split
	mustInNS(t, client, func() error {
		var err error
		sp, err = ApplySplit(SplitConfig{StatePath: state, Mark: testMark})
		return err
	})
	t.Cleanup(func() { sp.Remove() })
	var ks *KillSwitch
	mustInNS(t, client, func() error {
		var err error
		ks, err = EnableKillSwitch(state, KillSwitchRules{TUN: "nymvpn0", Mark: testMark, Exclude: sp.Exclude()})
		return err
	})
	t.Cleanup(func() { ks.Disable() })
	group := filepath.Join(mount, sp.group)

	got, err := fetchIn(client, group, "198.51.100.1", "80", 10*time.Second)
	if err != nil || !strings.HasPrefix(got, "192.0.2.2:") {
		t.Errorf("excluded program: got %q, %v; want the server to see 192.0.2.2 (the uplink's address, masqueraded)", got, err)
	}
	if got, err := fetchIn(client, "", "198.51.100.1", "80", 2*time.Second); err == nil {
		t.Errorf("a program outside the group reached the server around the tunnel: %q", got)
	}
	before, err := ks.Dropped()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dialMarkedIn(t, client, "198.51.100.1:80", testMark, 300*time.Millisecond); err == nil {
		t.Errorf("a socket with the tunnel's mark, outside the group, got through the kill switch")
	}
	if after, err := ks.Dropped(); err != nil || after.Output.Packets <= before.Output.Packets {
		t.Errorf("the kill switch counted no drop for the marked socket: %+v -> %+v (%v)", before.Output, after.Output, err)
	}

	// A user cannot put itself in the group, nor make one inside it.
	nobody := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		"sh", "-c", `echo $$ > "$G/cgroup.procs" || exit 1; mkdir "$G/mine" || exit 2`)
	nobody.Env = append(os.Environ(), "G="+group)
	if out, err := nobody.CombinedOutput(); err == nil {
		t.Errorf("uid 65534 joined the exclusion group: %s", out)
	} else if !strings.Contains(string(out), "ermission denied") {
		t.Errorf("uid 65534: want permission denied, got %v: %s", err, out)
	}

	// The group lists its programs; Remove moves them out.
	sleeper := exec.Command("nsenter", "--net=/run/netns/"+client, "bash", "-c", `echo $$ > "$G/cgroup.procs" && exec sleep 600`)
	sleeper.Env = append(os.Environ(), "G="+group)
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sleeper.Process.Kill(); sleeper.Wait() })
	var listed []string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		mustInNS(t, client, func() error { listed, err = ExcludedPrograms(); return err })
		if len(listed) == 1 && strings.HasSuffix(listed[0], " sleep") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ExcludedPrograms: %q, want the sleep alone", listed)
		}
	}
	if err := sp.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(group); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the group is still there after Remove: %v", err)
	}
	if cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", sleeper.Process.Pid)); err != nil || strings.Contains(string(cg), sp.group) {
		t.Errorf("the excluded program is still in the group: %q, %v", cg, err)
	}
	if rs := nftRuleset(t, client); strings.Contains(rs, SplitTable) {
		t.Errorf("table %s left after Remove:\n%s", SplitTable, rs)
	}
	if got, err := fetchIn(client, "", "198.51.100.1", "80", 2*time.Second); err == nil {
		t.Errorf("after Remove, a program reached the server around the tunnel: %q", got)
	}
}

// TestSplitTunnelRestoredAfterACrash: the group and the table a crashed run
// left are removed by Restore, which the next daemon calls at start.
func TestSplitTunnelRestoredAfterACrash(t *testing.T) {
	requireNetAdmin(t)
	mount := cgroup2MountForTest(t)
	ns := newNS(t, "xr")
	state := filepath.Join(t.TempDir(), "state", "state.json")
	var sp *Split
	mustInNS(t, ns, func() error {
		var err error
		sp, err = ApplySplit(SplitConfig{StatePath: state, Mark: testMark})
		return err
	})
	t.Cleanup(func() { sp.Remove() })
	group := filepath.Join(mount, sp.group)
	if fi, err := os.Stat(group); err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("group %s: %v, %v; want a directory of mode 0755", group, fi, err)
	}
	if rs := nftRuleset(t, ns); !strings.Contains(rs, SplitTable) || !strings.Contains(rs, "socket cgroupv2 level 1") {
		t.Fatalf("no split table:\n%s", rs)
	}
	// The crash: the Split is dropped without Remove.
	mustInNS(t, ns, func() error { return RestoreKeepingKillSwitch(state) })
	if _, err := os.Stat(group); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Restore left the group: %v", err)
	}
	if rs := nftRuleset(t, ns); strings.Contains(rs, SplitTable) {
		t.Errorf("Restore left table %s:\n%s", SplitTable, rs)
	}
	if _, err := os.Stat(state); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state file left after Restore: %v", err)
	}
}
