package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestSettingsRoundTrip: what set changes survives the file, and a connect
// request saved comes back the same request.
func TestSettingsRoundTrip(t *testing.T) {
	path := settingsPath(filepath.Join(t.TempDir(), "state", "platform-abc.state"))
	if !strings.HasSuffix(path, "settings-abc.toml") {
		t.Fatalf("settings path %s", path)
	}
	s, err := loadSettings(path)
	if err != nil || s.Lockdown || s.Connect != nil {
		t.Fatalf("missing file: %+v %v; want the defaults", s, err)
	}
	req := connectRequest{DirectoryURL: "http://192.0.2.10:8000", DirectoryKey: standInKey, Profile: "nodelay", Mode: modeFast, dnsText: []string{"198.51.100.53"}, KillSwitch: true}
	if err := req.check(); err != nil {
		t.Fatal(err)
	}
	s.Connect = saveConnect(req)
	for _, kv := range [][2]string{{"lockdown", "on"}, {"allow_lan", "yes"}, {"auto-connect", "on"}, {"dns", "192.0.2.53, 2001:db8::53"}} {
		if s, err = s.set(kv[0], kv[1]); err != nil {
			t.Fatalf("set %s %s: %v", kv[0], kv[1], err)
		}
	}
	if err := s.save(path); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("settings file mode: %v %v", fi.Mode(), err)
	}
	got, err := loadSettings(path)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Lockdown || !got.AllowLAN || !got.AutoConnect {
		t.Fatalf("loaded %+v", got)
	}
	back, err := got.Connect.request()
	if err != nil {
		t.Fatal(err)
	}
	if back.Mode != modeFast || back.Profile != "nodelay" || back.DirectoryURL != req.DirectoryURL || !back.KillSwitch ||
		!slices.Equal(got.Connect.DNS, []string{"192.0.2.53", "2001:db8::53"}) || len(back.DNS) != 2 {
		t.Fatalf("request back from the file: %+v", back)
	}
}

// TestSettingsRefused: bad values are refused by set, and a file others
// may read or with a key this program does not know is refused on load.
func TestSettingsRefused(t *testing.T) {
	var s settings
	for _, kv := range [][2]string{{"lockdown", "maybe"}, {"mode", "warp"}, {"profile", "nope"}, {"dns", "not-an-address"},
		{"dns", ""}, {"colour", "blue"}, {"auto-connect", "on"}} {
		if _, err := s.set(kv[0], kv[1]); err == nil {
			t.Errorf("set %s %q accepted", kv[0], kv[1])
		}
	}
	dir := t.TempDir()
	exposed := filepath.Join(dir, "exposed.toml")
	os.WriteFile(exposed, []byte("lockdown = true\n"), 0o644)
	if _, err := loadSettings(exposed); err == nil {
		t.Error("a settings file others may read was accepted")
	}
	unknown := filepath.Join(dir, "unknown.toml")
	os.WriteFile(unknown, []byte("lockdwn = true\n"), 0o600)
	if _, err := loadSettings(unknown); err == nil {
		t.Error("a settings file with an unknown key was accepted")
	}
	badMode := filepath.Join(dir, "bad.toml")
	os.WriteFile(badMode, []byte("[connect]\nmode = \"warp\"\n"), 0o600)
	if _, err := loadSettings(badMode); err == nil {
		t.Error("a settings file with a bad mode was accepted")
	}
}

// TestSettingsFillConnect: connect takes from the settings what its flags
// leave out, and only that.
func TestSettingsFillConnect(t *testing.T) {
	saved := &savedConnect{Mode: modeFast, Profile: "nodelay", DNS: []string{"192.0.2.53"}, Directory: "http://192.0.2.10:8000", DirectoryKey: standInKey}
	req := connectRequest{Mode: modeAnonymous, Profile: "default", dnsText: defaultDNS}
	saved.fill(&req, func(flag string) bool { return flag == "profile" })
	if err := req.check(); err != nil {
		t.Fatal(err)
	}
	if req.Mode != modeFast || req.Profile != "default" || req.DirectoryURL != saved.Directory || len(req.DNS) != 1 {
		t.Fatalf("filled %+v", req)
	}
	req = connectRequest{Mode: modeAnonymous, Profile: "default", DirectoryURL: "http://192.0.2.11:8000", DirectoryKey: standInKey}
	saved.fill(&req, func(flag string) bool { return flag == "directory" || flag == "directory-key" })
	if req.DirectoryURL != "http://192.0.2.11:8000" {
		t.Fatalf("the remembered directory replaced the one given: %+v", req)
	}
}

// FuzzParseSettings: no settings file text makes the parser panic, and what
// it accepts survives a save and a parse unchanged.
func FuzzParseSettings(f *testing.F) {
	f.Add([]byte("lockdown = true\nallow_lan = false\nauto_connect = true\n[connect]\nmode = \"fast\"\nprofile = \"nodelay\"\ndns = [\"192.0.2.53\"]\ndirectory = \"http://192.0.2.10:8000\"\ndirectory_key = \"" + standInKey + "\"\nkill_switch = true\n"))
	f.Add([]byte("lockdown = 1\n"))
	f.Add([]byte("[connect]\nnetwork = \"threshold = 1\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := parseSettings(data)
		if err != nil {
			return
		}
		path := filepath.Join(t.TempDir(), "settings.toml")
		if err := s.save(path); err != nil {
			t.Fatal(err)
		}
		back, err := loadSettings(path)
		if err != nil {
			t.Fatalf("saved settings do not load: %v", err)
		}
		if back.Lockdown != s.Lockdown || back.AllowLAN != s.AllowLAN || back.AutoConnect != s.AutoConnect || (back.Connect == nil) != (s.Connect == nil) {
			t.Fatalf("settings changed across a save: %+v, then %+v", s, back)
		}
	})
}
