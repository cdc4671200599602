package platform

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRestoreWithoutStateFileDoesNothing(t *testing.T) {
	if err := Restore(filepath.Join(t.TempDir(), "none", "state.json")); err != nil {
		t.Errorf("Restore without a state file: %v", err)
	}
}

func TestRestoreRefusesStateItCannotRead(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"corrupt": "{not json",
		"newer":   `{"version": 99, "dns": [{"path": "/x", "kind": "absent"}]}`,
	} {
		path := filepath.Join(dir, name+".json")
		os.WriteFile(path, []byte(content), 0o600)
		if err := Restore(path); err == nil {
			t.Errorf("%s state file: Restore succeeded", name)
		}
		if got, _ := os.ReadFile(path); string(got) != content {
			t.Errorf("%s state file was rewritten to %q", name, got)
		}
	}
}

// TestRestoreKeepsWhatItCouldNotUndo: a record that fails stays in the file
// for the next attempt, and the others are undone anyway.
func TestRestoreKeepsWhatItCouldNotUndo(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "resolv.conf")
	os.WriteFile(good, []byte(originalResolvConf), 0o644)
	state := filepath.Join(dir, "state", "state.json")
	if _, err := ApplyDNS(DNSConfig{StatePath: state, ResolvConf: good, Servers: tunnelResolvers}); err != nil {
		t.Fatal(err)
	}
	// A record whose directory has gone cannot be restored.
	bad := filepath.Join(dir, "gone", "resolv.conf")
	os.Mkdir(filepath.Dir(bad), 0o755)
	if _, err := ApplyDNS(DNSConfig{StatePath: state, ResolvConf: bad, Servers: tunnelResolvers}); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(bad, []byte("nameserver 192.0.2.53\n"), 0o644) // pretend ours, then break the dir
	os.RemoveAll(filepath.Dir(bad))
	os.WriteFile(filepath.Dir(bad), nil, 0o644) // a file where the directory was

	if err := Restore(state); err == nil {
		t.Fatal("Restore reported success though a record could not be undone")
	}
	if got := string(readFile(t, good)); got != originalResolvConf {
		t.Errorf("the restorable record was not restored: %q", got)
	}
	st, err := os.ReadFile(state)
	if err != nil || !strings.Contains(string(st), "gone") || strings.Contains(string(st), `"`+good+`"`) {
		t.Errorf("state after partial Restore: %s (%v)", st, err)
	}
}

// TestRestoreRefusesAPlantedStateFile: a state file tells root which files
// to write and which sysctls to set. One that someone else could have
// written, or with a record this package never makes, is refused, and
// nothing it names is touched.
func TestRestoreRefusesAPlantedStateFile(t *testing.T) {
	// Outside the tests' temporary directory, where no resolver file may be.
	outside, err := os.MkdirTemp("/var/tmp", "nymvpn-planted")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(outside) })
	planted := filepath.Join(outside, "planted")
	dir := t.TempDir()
	setuidTarget := filepath.Join(dir, "resolv.conf")
	sysctlTarget := filepath.Join(dir, "sysctl-target")
	good := `{"version":1,"dns":[{"path":"` + filepath.Join(dir, "good", "resolv.conf") + `","kind":"absent","uid":0,"gid":0,"ours":null}]}`

	for _, tc := range []struct {
		name, content string
		prepare       func(t *testing.T, stateDir, state string)
		victim        string // a file that must not appear
	}{
		{name: "record at an arbitrary path", victim: planted,
			content: `{"version":1,"dns":[{"path":"` + planted + `","kind":"file","content":"cm9vdA==","mode":420,"uid":0,"gid":0,"ours":null}]}`},
		{name: "setuid mode", victim: setuidTarget,
			content: `{"version":1,"dns":[{"path":"` + setuidTarget + `","kind":"file","content":"cm9vdA==","mode":8389101,"uid":0,"gid":0,"ours":null}]}`},
		{name: "sysctl key with ..", victim: sysctlTarget,
			content: `{"version":1,"exit":{"netns":0,"table":"nymexit","sysctls":[{"key":"net/../../..` + sysctlTarget + `","old":"1"}]}}`},
		{name: "sysctl key not ours", victim: "",
			content: `{"version":1,"exit":{"netns":0,"table":"nymexit","sysctls":[{"key":"kernel/core_pattern","old":"1"}]}}`},
		{name: "world-writable directory", content: good,
			prepare: func(t *testing.T, stateDir, _ string) { os.Chmod(stateDir, 0o777) }},
		{name: "world-writable file", content: good,
			prepare: func(t *testing.T, _, state string) { os.Chmod(state, 0o666) }},
		{name: "wrong owner", content: good,
			prepare: func(t *testing.T, _, state string) {
				if os.Geteuid() != 0 {
					t.Skip("chown to another user needs root")
				}
				if err := os.Chown(state, 65534, 65534); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "symbolic link", content: good,
			prepare: func(t *testing.T, stateDir, state string) {
				target := filepath.Join(stateDir, "real")
				os.Rename(state, target)
				os.Symlink(target, state)
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stateDir := filepath.Join(t.TempDir(), "state")
			if err := os.Mkdir(stateDir, 0o700); err != nil {
				t.Fatal(err)
			}
			state := filepath.Join(stateDir, "state.json")
			if err := os.WriteFile(state, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if tc.prepare != nil {
				tc.prepare(t, stateDir, state)
			}
			err := Restore(state)
			if tc.victim != "" {
				if _, serr := os.Lstat(tc.victim); serr == nil {
					t.Errorf("Restore wrote %s as the planted state file said", tc.victim)
				}
			}
			if err == nil || !strings.Contains(err.Error(), "refused") {
				t.Errorf("Restore of a planted state file: %v, want a refusal", err)
			}
		})
	}
	// The same file, ours and in order, is accepted.
	stateDir := filepath.Join(t.TempDir(), "state")
	os.Mkdir(stateDir, 0o700)
	state := filepath.Join(stateDir, "state.json")
	os.WriteFile(state, []byte(good), 0o600)
	os.Mkdir(filepath.Join(dir, "good"), 0o755)
	if err := Restore(state); err != nil {
		t.Errorf("Restore of a good state file: %v", err)
	}
}

func TestSysctlKeys(t *testing.T) {
	for key, ok := range map[string]bool{
		"net/ipv4/ip_forward":                        true,
		"net/ipv6/conf/all/forwarding":               true,
		"net/ipv4/conf/uplink0/forwarding":           true,
		"net/ipv6/conf/eth0.100/forwarding":          true,
		"net/ipv6/conf/eth0/accept_ra":               true,
		"net/ipv4/conf/../forwarding":                false,
		"net/ipv4/conf/a/b/forwarding":               false,
		"net/ipv4/conf/this-is-too-long0/forwarding": false,
		"net/ipv6/conf/eth0/disable_ipv6":            false,
		"kernel/core_pattern":                        false,
		"net/../kernel/core_pattern":                 false,
		"net/ipv4/ip_forward/../../../x":             false,
	} {
		if err := checkSysctlKey(key); (err == nil) != ok {
			t.Errorf("checkSysctlKey(%q) = %v, want allowed %v", key, err, ok)
		}
	}
}

// FuzzLoadState: whatever a state file holds, loading it does not panic,
// and what it accepts passes validation again after a save and a load.
func FuzzLoadState(f *testing.F) {
	dir := filepath.Join(f.TempDir(), "state")
	if err := os.Mkdir(dir, 0o700); err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(`{"version":1,"dns":[{"path":"/etc/resolv.conf","kind":"file","content":"eA==","mode":420,"uid":0,"gid":0,"ours":null}]}`))
	f.Add([]byte(`{"version":1,"routes":{"netns":1,"rules":[{"priority":32760,"table":254,"suppress_default":true}],"sysctls":[{"key":"net/ipv4/conf/all/src_valid_mark","old":"0"}]}}`))
	f.Add([]byte(`{"version":1,"exit":{"netns":0,"table":"nymexit","sysctls":[{"key":"net/ipv4/conf/eth0/forwarding","old":"0"}]}}`))
	f.Add([]byte(`{"version":1,"kill_switch":{"netns":3,"table":"nymvpn"}}`))
	path := filepath.Join(dir, "state.json")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		st, err := loadState(path)
		if err != nil {
			return
		}
		if err := saveState(path, st); err != nil {
			t.Fatalf("an accepted state does not save: %v", err)
		}
		if _, err := loadState(path); err != nil && !st.empty() {
			t.Fatalf("a saved state does not load: %v", err)
		}
	})
}
