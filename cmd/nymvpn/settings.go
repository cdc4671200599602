package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/nym-go/nym/internal/keyfile"
)

// settings are what the daemon remembers across restarts. The daemon is
// their only writer (`nymvpn set` asks it over the control socket), into a
// TOML file beside its state file: root's directory, mode 0600, replaced
// atomically, so a crash leaves the old settings or the new ones.
type settings struct {
	// Lockdown keeps the kill switch on while no tunnel is up: from the
	// daemon's start (and the boot unit's `nymvpn lockdown apply`, before
	// the network comes up), through disconnects, crashes and restarts,
	// until it is turned off.
	Lockdown bool `toml:"lockdown" json:"lockdown"`
	// AllowLAN lets the uplink's local subnets bypass the tunnel and the
	// kill switch.
	AllowLAN bool `toml:"allow_lan" json:"allow_lan"`
	// AutoConnect makes the daemon connect at start with Connect.
	AutoConnect bool `toml:"auto_connect" json:"auto_connect"`
	// Connect is the last connect request, with the mode, profile and DNS
	// that `nymvpn set` changed since; `nymvpn connect` fills from it what
	// its flags do not say.
	Connect *savedConnect `toml:"connect,omitempty" json:"connect,omitempty"`
}

// savedConnect is a connectRequest as the settings file keeps it.
type savedConnect struct {
	Mode         string   `toml:"mode,omitempty" json:"mode,omitempty"`
	Profile      string   `toml:"profile,omitempty" json:"profile,omitempty"`
	DNS          []string `toml:"dns,omitempty" json:"dns,omitempty"`
	Network      string   `toml:"network,omitempty" json:"network,omitempty"`
	Directory    string   `toml:"directory,omitempty" json:"directory,omitempty"`
	DirectoryKey string   `toml:"directory_key,omitempty" json:"directory_key,omitempty"`
	Entry        string   `toml:"entry,omitempty" json:"entry,omitempty"`
	Exit         string   `toml:"exit,omitempty" json:"exit,omitempty"`
	KillSwitch   bool     `toml:"kill_switch" json:"kill_switch"`
}

// maxSettings bounds the settings file: a network file of a few
// authorities is the largest part.
const maxSettings = 256 << 10

// settingsPath is the settings file of the daemon keeping its state at
// statePath: one per state file, as the state file is one per socket.
func settingsPath(statePath string) string { return besideState(statePath, "settings", ".toml") }

// saveConnect remembers req (which passed check).
func saveConnect(req connectRequest) *savedConnect {
	s := &savedConnect{Mode: req.Mode, Profile: req.Profile, Network: req.Network, Directory: req.DirectoryURL,
		DirectoryKey: req.DirectoryKey, Entry: req.Entry, Exit: req.Exit, KillSwitch: req.KillSwitch}
	for _, a := range req.DNS {
		s.DNS = append(s.DNS, a.String())
	}
	return s
}

// hasNetwork tells whether s names the authorities: whether it can connect.
func (s *savedConnect) hasNetwork() bool {
	return s != nil && (s.Network != "" || s.Directory != "")
}

// request is s as a connect request, checked.
func (s *savedConnect) request() (connectRequest, error) {
	req := connectRequest{Mode: s.Mode, Profile: s.Profile, Network: s.Network, DirectoryURL: s.Directory,
		DirectoryKey: s.DirectoryKey, Entry: s.Entry, Exit: s.Exit, KillSwitch: s.KillSwitch, dnsText: s.DNS}
	if req.Profile == "" {
		req.Profile = "default"
	}
	if req.dnsText == nil {
		req.dnsText = defaultDNS
	}
	if err := req.check(); err != nil {
		return connectRequest{}, err
	}
	return req, nil
}

// standInKey is a well-formed directory key, for checking a saved request
// that names no network yet.
const standInKey = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE"

// defaultDNS are connect's resolvers when neither --dns nor the settings
// name any (--dns's default).
var defaultDNS = []string{"1.1.1.1", "9.9.9.9"}

// loadSettings reads the settings file; a missing one is the defaults. One
// that group or others may read or write, or with a key this program does
// not know, is refused: a daemon that misread its settings could run
// without the lockdown its user turned on.
func loadSettings(path string) (settings, error) {
	data, err := keyfile.ReadLimit(path, maxSettings)
	if errors.Is(err, fs.ErrNotExist) {
		return settings{}, nil
	}
	if err != nil {
		return settings{}, fmt.Errorf("settings: %w", err)
	}
	s, err := parseSettings(data)
	if err != nil {
		return settings{}, fmt.Errorf("settings %s: %w", path, err)
	}
	return s, nil
}

// parseSettings decodes and checks a settings file's text.
func parseSettings(data []byte) (settings, error) {
	if len(data) > maxSettings {
		return settings{}, fmt.Errorf("larger than %d bytes", maxSettings)
	}
	var s settings
	md, err := toml.Decode(string(data), &s)
	if err != nil {
		return settings{}, err
	}
	if u := md.Undecoded(); len(u) > 0 {
		return settings{}, fmt.Errorf("unknown key %q", u[0].String())
	}
	if s.Connect != nil {
		if err := s.Connect.validate(); err != nil {
			return settings{}, err
		}
	}
	return s, nil
}

// validate checks what `nymvpn set` may change alone, and the whole request
// when it names a network.
func (s *savedConnect) validate() error {
	if s.hasNetwork() {
		_, err := s.request()
		return err
	}
	// Alone, the rest is checked as part of a request to a stand-in
	// network: one check, the connect's own.
	c := *s
	c.Directory, c.DirectoryKey = "http://192.0.2.1", standInKey
	_, err := c.request()
	return err
}

// save writes s to path atomically (0600), making the directory (0700) when
// missing.
func (s settings) save(path string) error {
	var buf bytes.Buffer
	buf.WriteString("# Written by the nymvpn daemon; change with `nymvpn set KEY VALUE`.\n")
	if err := toml.NewEncoder(&buf).Encode(s); err != nil {
		return fmt.Errorf("settings: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), keyfile.DirMode); err != nil {
		return fmt.Errorf("settings: %w", err)
	}
	err := keyfile.Replace(path, func(f *os.File) error {
		_, err := f.Write(buf.Bytes())
		return err
	})
	if err != nil {
		return fmt.Errorf("settings: %w", err)
	}
	return nil
}

// settingKeys are the keys `nymvpn set` takes, with what each value means.
var settingKeys = []struct{ key, help string }{
	{"lockdown", "on|off: nothing leaves outside the tunnel, also while disconnected, stopped or booting"},
	{"allow-lan", "on|off: the uplink's local subnets bypass the tunnel and the kill switch"},
	{"auto-connect", "on|off: the daemon connects at start with the last connect's parameters"},
	{"mode", "anonymous|fast: the mode of the next connect that does not give --mode"},
	{"profile", "default|nodelay: the profile of the next connect that does not give --profile"},
	{"dns", "ADDR[,ADDR...]: the resolvers of the next connect that does not give --dns"},
}

// set returns s with key changed to value, checked.
func (s settings) set(key, value string) (settings, error) {
	key = strings.ReplaceAll(strings.ToLower(key), "_", "-")
	onOff := func() (bool, error) {
		switch strings.ToLower(value) {
		case "on", "true", "yes", "1":
			return true, nil
		case "off", "false", "no", "0":
			return false, nil
		}
		return false, fmt.Errorf("%s %q: want on or off", key, value)
	}
	var err error
	c := savedConnect{}
	if s.Connect != nil {
		c = *s.Connect
	}
	switch key {
	case "lockdown":
		s.Lockdown, err = onOff()
	case "allow-lan":
		s.AllowLAN, err = onOff()
	case "auto-connect":
		if s.AutoConnect, err = onOff(); err == nil && s.AutoConnect && !c.hasNetwork() {
			err = errors.New("auto-connect: connect once first, so the daemon knows which network")
		}
	case "mode", "profile", "dns":
		switch key {
		case "mode":
			c.Mode = value
		case "profile":
			c.Profile = value
		case "dns":
			c.DNS = nil
			for a := range strings.SplitSeq(value, ",") {
				if a = strings.TrimSpace(a); a != "" {
					c.DNS = append(c.DNS, a)
				}
			}
			if len(c.DNS) == 0 {
				err = errors.New("dns: name at least one resolver")
			}
		}
		if err == nil {
			err = c.validate()
		}
		s.Connect = &c
	default:
		err = fmt.Errorf("unknown setting %q (lockdown, allow-lan, auto-connect, mode, profile, dns)", key)
	}
	if err != nil {
		return settings{}, err
	}
	return s, nil
}

// fill completes req (from the command line, not yet checked) with what s
// remembers for what the user did not give: given(flag) says which flags
// were.
func (s *savedConnect) fill(req *connectRequest, given func(flag string) bool) {
	if s == nil {
		return
	}
	if !given("network") && !given("directory") && !given("directory-key") && s.hasNetwork() {
		req.Network, req.DirectoryURL, req.DirectoryKey = s.Network, s.Directory, s.DirectoryKey
		if !given("entry") {
			req.Entry = s.Entry
		}
		if !given("exit") {
			req.Exit = s.Exit
		}
	}
	if !given("mode") && s.Mode != "" {
		req.Mode = s.Mode
	}
	if !given("profile") && s.Profile != "" {
		req.Profile = s.Profile
	}
	if !given("dns") && len(s.DNS) > 0 {
		req.dnsText = s.DNS
	}
}
