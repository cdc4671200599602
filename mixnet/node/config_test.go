package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
}

func TestConfigErrors(t *testing.T) {
	cases := map[string]string{
		"unknown setting": "mode = \"mixnode\"\nmixnet_lissen = \"x\"\n",
		"bad duration":    "max_delay = \"soon\"\n",
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
