package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The sample in contrib/ must stay loadable as the operator's config.
func TestSampleConfigLoads(t *testing.T) {
	sample, err := os.ReadFile("../../contrib/nym-node.toml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), sample, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.AnnounceHost != "203.0.113.10" || c.MaxDelay.Seconds() != 10 {
		t.Fatalf("sample not read: %+v", c)
	}
	// The sample's replay settings are comments showing the defaults.
	d := DefaultConfig()
	if c.ReplayCapacity != d.ReplayCapacity || c.ReplayFPRate != d.ReplayFPRate || c.ReplayFlushInterval != d.ReplayFlushInterval {
		t.Errorf("sample replay settings %d %g %v differ from the defaults", c.ReplayCapacity, c.ReplayFPRate, c.ReplayFlushInterval)
	}
	uncommented := strings.NewReplacer("# replay_", "replay_").Replace(string(sample))
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), []byte(uncommented), 0o600); err != nil {
		t.Fatal(err)
	}
	u, err := LoadConfig(dir)
	if err != nil {
		t.Fatalf("sample with replay settings uncommented: %v", err)
	}
	if u.ReplayCapacity != d.ReplayCapacity || u.ReplayFPRate != d.ReplayFPRate || u.ReplayFlushInterval != d.ReplayFlushInterval {
		t.Errorf("sample's commented replay values %d %g %v are not the defaults", u.ReplayCapacity, u.ReplayFPRate, u.ReplayFlushInterval)
	}
	if got := u.ReplayDir(); got != filepath.Join(dir, "replay") {
		t.Errorf("ReplayDir %q, want the data directory's replay/", got)
	}
}

// WriteConfig's output must load back with the replay settings intact.
func TestConfigReplayRoundTrip(t *testing.T) {
	c := DefaultConfig()
	c.DataDir = t.TempDir()
	c.ReplayCapacity, c.ReplayFPRate, c.ReplayFlushInterval.Duration = 1_000_000, 1e-6, 5*time.Minute
	if err := WriteConfig(c); err != nil {
		t.Fatal(err)
	}
	got, err := LoadConfig(c.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	if got.ReplayCapacity != c.ReplayCapacity || got.ReplayFPRate != c.ReplayFPRate || got.ReplayFlushInterval != c.ReplayFlushInterval {
		t.Errorf("loaded %d %g %v, wrote %d %g %v", got.ReplayCapacity, got.ReplayFPRate, got.ReplayFlushInterval,
			c.ReplayCapacity, c.ReplayFPRate, c.ReplayFlushInterval)
	}
}

func TestConfigErrors(t *testing.T) {
	cases := map[string]string{
		"unknown setting": "mode = \"mixnode\"\nmixnet_lissen = \"x\"\n",
		"bad duration":    "max_delay = \"soon\"\n",
		"bad flush":       "replay_flush_interval = \"often\"\n",
	}
	for name, text := range cases {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, ConfigFile), []byte(text), 0o600)
		if _, err := LoadConfig(dir); err == nil {
			t.Errorf("%s: loaded", name)
		}
	}
	bad := []func(*Config){
		func(c *Config) { c.Mode = "router" },
		func(c *Config) { c.DirectoryURL = "" },
		func(c *Config) { c.MixnetListen = "nope" },
		func(c *Config) { c.MaxDelay.Duration = 0 },
		func(c *Config) { c.QueueLen = 0 },
		func(c *Config) { c.ReplayCapacity = 0 },
		func(c *Config) { c.ReplayCapacity = -1 },
		func(c *Config) { c.ReplayFPRate = 0 },
		func(c *Config) { c.ReplayFPRate = 0.9 },
		func(c *Config) { c.ReplayCapacity = 1 << 62 }, // terabytes
		func(c *Config) { c.ReplayFlushInterval.Duration = 0 },
		func(c *Config) { c.ReplayFlushInterval.Duration = time.Second },
	}
	for i, edit := range bad {
		c := DefaultConfig()
		c.DataDir, c.DirectoryURL, c.DirectoryKey = t.TempDir(), "http://x", "k"
		edit(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("case %d: validated", i)
		} else if strings.TrimSpace(err.Error()) == "" {
			t.Errorf("case %d: empty error", i)
		}
	}
}
