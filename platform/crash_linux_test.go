package platform

import (
	"bufio"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// hostCrashHelperEnv makes the test binary a process that makes every kind
// of change this package knows, says "ready" and waits to be killed.
const hostCrashHelperEnv = "PLATFORM_TEST_HOST_CRASH_HELPER"

func TestHostCrashHelperProcess(t *testing.T) {
	spec := os.Getenv(hostCrashHelperEnv)
	if spec == "" {
		t.Skip("helper process for TestRestoreAfterACrashUndoesEverything")
	}
	state, resolvConf, _ := strings.Cut(spec, "|")
	fail := func(err error) {
		os.Stdout.WriteString("error: " + err.Error() + "\n")
		os.Exit(1)
	}
	// `ip netns exec` put the whole process into the namespace.
	if _, err := ApplyDNS(DNSConfig{StatePath: state, ResolvConf: resolvConf, Servers: tunnelResolvers}); err != nil {
		fail(err)
	}
	cfg := testRouteConfig
	cfg.StatePath = state
	if _, err := ApplyRoutes(cfg); err != nil {
		fail(err)
	}
	if _, err := EnableKillSwitch(state, KillSwitchRules{TUN: "nymvpn0", Allowed: []Endpoint{gateway("198.51.100.10", 443, TCP)}}); err != nil {
		fail(err)
	}
	_, err := StartExitNetworking(ExitConfig{StatePath: state, TUN: "nymtun0", Uplink: "up0",
		ClientPrefixes: []netip.Prefix{pfx("10.0.0.0/16")}})
	if err != nil {
		fail(err)
	}
	os.Stdout.WriteString("ready\n")
	time.Sleep(time.Minute)
	os.Exit(2) // never reached: the parent kills us
}

func TestRestoreAfterACrashUndoesEverything(t *testing.T) {
	requireNetAdmin(t)
	ns, routes := routeLab(t, "cr")
	dir := t.TempDir()
	resolvConf := filepath.Join(dir, "resolv.conf")
	os.WriteFile(resolvConf, []byte(originalResolvConf), 0o644)
	state := filepath.Join(dir, "run", "nymvpn", "state.json")
	sysctls := func() string {
		return sh(t, "ip", "netns", "exec", ns, "cat", "/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding")
	}
	routesBefore, rulesetBefore, sysctlsBefore := routes(), nftRuleset(t, ns), sysctls()
	hostBefore := nftRuleset(t, "")

	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^TestHostCrashHelperProcess$")
	cmd.Env = append(os.Environ(), hostCrashHelperEnv+"="+state+"|"+resolvConf)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	cmd.Process.Kill() // `ip netns exec` execs the helper, so this is SIGKILL to it
	cmd.Wait()
	if line != "ready\n" {
		t.Fatalf("helper: %q", line)
	}

	// What the dead process left.
	if routes() == routesBefore || !strings.Contains(nftRuleset(t, ns), KillSwitchTable) ||
		!strings.Contains(nftRuleset(t, ns), ExitTable) || sysctls() == sysctlsBefore {
		t.Fatalf("the helper did not change the namespace")
	}
	checkOurs(t, resolvConf)

	mustInNS(t, ns, func() error { return Restore(state) })
	if got := routes(); got != routesBefore {
		t.Errorf("routes after Restore:\n%s\nwant:\n%s", got, routesBefore)
	}
	if got := nftRuleset(t, ns); got != rulesetBefore {
		t.Errorf("ruleset after Restore:\n%s\nwant:\n%s", got, rulesetBefore)
	}
	if got := sysctls(); got != sysctlsBefore {
		t.Errorf("sysctls after Restore: %q, want %q", got, sysctlsBefore)
	}
	if got := string(readFile(t, resolvConf)); got != originalResolvConf {
		t.Errorf("resolv.conf after Restore: %q", got)
	}
	if got := nftRuleset(t, ""); got != hostBefore {
		t.Errorf("host ruleset changed:\n%s", got)
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("state file left after Restore: %v", err)
	}
	mustInNS(t, ns, func() error { return Restore(state) }) // idempotent
}
