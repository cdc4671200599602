package platform

import (
	"bufio"
	"bytes"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const originalResolvConf = "# from DHCP\nnameserver 192.168.1.1\nsearch lan\noptions edns0\n"

var tunnelResolvers = []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("fc00::1")}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func checkOurs(t *testing.T, path string) {
	t.Helper()
	got := string(readFile(t, path))
	for _, want := range []string{"nameserver 10.0.0.1\n", "nameserver fc00::1\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("%s lacks %q:\n%s", path, want, got)
		}
	}
	if strings.Contains(got, "192.168.1.1") {
		t.Errorf("%s still names the original resolver:\n%s", path, got)
	}
}

func TestDNSPlainFileComesBackByteIdentical(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(path, []byte(originalResolvConf), 0o640); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state", "state.json")
	d, err := ApplyDNS(DNSConfig{StatePath: state, ResolvConf: path, Servers: tunnelResolvers})
	if err != nil {
		t.Fatal(err)
	}
	checkOurs(t, path)
	if err := d.Restore(); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, path); string(got) != originalResolvConf {
		t.Errorf("restored content %q, want %q", got, originalResolvConf)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("restored mode: %v %v, want 0640", fi.Mode(), err)
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("state file left: %v", err)
	}
	if err := d.Restore(); err != nil {
		t.Errorf("second Restore: %v", err)
	}
}

// TestDNSSymlinkIsReplacedNotWrittenThrough mimics systemd-resolved:
// resolv.conf links to a stub file another program owns.
func TestDNSSymlinkIsReplacedNotWrittenThrough(t *testing.T) {
	dir := t.TempDir()
	stubDir := filepath.Join(dir, "run", "systemd", "resolve")
	if err := os.MkdirAll(stubDir, 0o755); err != nil {
		t.Fatal(err)
	}
	stub := filepath.Join(stubDir, "stub-resolv.conf")
	if err := os.WriteFile(stub, []byte("nameserver 127.0.0.53\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	etc := filepath.Join(dir, "etc")
	os.Mkdir(etc, 0o755)
	path := filepath.Join(etc, "resolv.conf")
	const target = "../run/systemd/resolve/stub-resolv.conf"
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state", "state.json")
	d, err := ApplyDNS(DNSConfig{StatePath: state, ResolvConf: path, Servers: tunnelResolvers})
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(path); err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("resolv.conf is not a plain file while connected: %v %v", fi.Mode(), err)
	}
	checkOurs(t, path)
	if got := string(readFile(t, stub)); got != "nameserver 127.0.0.53\n" {
		t.Errorf("the link's target was written through: %q", got)
	}
	if err := d.Restore(); err != nil {
		t.Fatal(err)
	}
	if got, err := os.Readlink(path); err != nil || got != target {
		t.Errorf("restored link points to %q (%v), want %q", got, err, target)
	}
}

func TestDNSAbsentFileIsRemovedAgain(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "resolv.conf")
	d, err := ApplyDNS(DNSConfig{StatePath: filepath.Join(dir, "state", "state.json"), ResolvConf: path, Servers: tunnelResolvers})
	if err != nil {
		t.Fatal(err)
	}
	checkOurs(t, path)
	if err := d.Restore(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("resolv.conf left behind: %v", err)
	}
}

// TestDNSLeavesANewerConfiguration: when a network manager rewrites the file
// while we are connected, its version is newer than our original.
func TestDNSLeavesANewerConfiguration(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "resolv.conf")
	os.WriteFile(path, []byte(originalResolvConf), 0o644)
	d, err := ApplyDNS(DNSConfig{StatePath: filepath.Join(dir, "state", "state.json"), ResolvConf: path, Servers: tunnelResolvers})
	if err != nil {
		t.Fatal(err)
	}
	const newer = "nameserver 192.168.1.254\n"
	os.WriteFile(path, []byte(newer), 0o644)
	if err := d.Restore(); err != nil {
		t.Fatal(err)
	}
	if got := string(readFile(t, path)); got != newer {
		t.Errorf("Restore clobbered a newer configuration: %q", got)
	}
}

func TestDNSRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	for name, cfg := range map[string]DNSConfig{
		"no state":   {ResolvConf: filepath.Join(dir, "r"), Servers: tunnelResolvers},
		"no servers": {StatePath: filepath.Join(dir, "s"), ResolvConf: filepath.Join(dir, "r")},
		"zero addr":  {StatePath: filepath.Join(dir, "s"), ResolvConf: filepath.Join(dir, "r"), Servers: []netip.Addr{{}}},
		"directory":  {StatePath: filepath.Join(dir, "s"), ResolvConf: dir, Servers: tunnelResolvers},
	} {
		if _, err := ApplyDNS(cfg); err == nil {
			t.Errorf("%s: ApplyDNS succeeded", name)
		}
	}
}

// crashHelperEnv makes the test binary a process that applies DNS, says
// "ready" and waits to be killed.
const crashHelperEnv = "PLATFORM_TEST_DNS_CRASH_HELPER"

func TestDNSCrashHelperProcess(t *testing.T) {
	spec := os.Getenv(crashHelperEnv)
	if spec == "" {
		t.Skip("helper process for TestRestoreAfterDNSCrash")
	}
	state, path, _ := strings.Cut(spec, "|")
	if _, err := ApplyDNS(DNSConfig{StatePath: state, ResolvConf: path, Servers: tunnelResolvers}); err != nil {
		os.Stdout.WriteString("error: " + err.Error() + "\n")
		os.Exit(1)
	}
	os.Stdout.WriteString("ready\n")
	time.Sleep(time.Minute)
	os.Exit(2) // never reached: the parent kills us
}

func TestRestoreAfterDNSCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a helper process; skipped with -short")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "resolv.conf")
	os.WriteFile(path, []byte(originalResolvConf), 0o644)
	state := filepath.Join(dir, "state", "state.json")

	cmd := exec.Command(os.Args[0], "-test.run=^TestDNSCrashHelperProcess$")
	cmd.Env = append(os.Environ(), crashHelperEnv+"="+state+"|"+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	if line != "ready\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("helper: %q", line)
	}
	cmd.Process.Kill() // SIGKILL: no deferred cleanup runs
	cmd.Wait()
	checkOurs(t, path)

	if err := Restore(state); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, path); !bytes.Equal(got, []byte(originalResolvConf)) {
		t.Errorf("after Restore: %q, want %q", got, originalResolvConf)
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("state file left: %v", err)
	}
	if err := Restore(state); err != nil {
		t.Errorf("second Restore: %v", err)
	}
}

// TestApplyDNSAfterACrashKeepsTheRealOriginal: a restarted daemon applies
// again over its own leftover; restoring must bring back the file from
// before the first run, not the leftover.
func TestApplyDNSAfterACrashKeepsTheRealOriginal(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "resolv.conf")
	os.WriteFile(path, []byte(originalResolvConf), 0o644)
	cfg := DNSConfig{StatePath: filepath.Join(dir, "state", "state.json"), ResolvConf: path, Servers: tunnelResolvers}
	if _, err := ApplyDNS(cfg); err != nil { // crashed run
		t.Fatal(err)
	}
	cfg.Servers = []netip.Addr{netip.MustParseAddr("10.0.0.53")}
	d, err := ApplyDNS(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Restore(); err != nil {
		t.Fatal(err)
	}
	if got := string(readFile(t, path)); got != originalResolvConf {
		t.Errorf("restored %q, want the original %q", got, originalResolvConf)
	}
}
