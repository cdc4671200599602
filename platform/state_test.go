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
	state := filepath.Join(dir, "state.json")
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
