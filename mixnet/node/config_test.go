package node

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nym-go/nym/mixnet/gateway"
	"github.com/nym-go/nym/mixnet/link"
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
	// So are its gateway limits: commented out, they leave the node's
	// zeroes, which the gateway reads as its defaults.
	if c.MaxClients != 0 || c.MaxStoredBytesPerClient != 0 || c.MessageTTL.Duration != 0 || c.ClientRetention.Duration != 0 || c.MaxStoredClients != 0 {
		t.Errorf("sample sets gateway limits: %+v", c)
	}
	// Uncomment every "# key = value" line.
	uncommented := regexp.MustCompile(`(?m)^# ([a-z_]+ *= )`).ReplaceAllString(string(sample), "$1")
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
	if err := u.Validate(); err != nil {
		t.Errorf("sample with its settings uncommented: %v", err)
	}
	if u.MaxClients != gateway.DefaultMaxClients || u.MaxStoredBytesPerClient != gateway.DefaultMaxStoredBytes ||
		u.MessageTTL.Duration != gateway.DefaultMessageTTL || u.ClientRetention.Duration != gateway.DefaultClientRetention ||
		u.MaxStoredClients != gateway.DefaultMaxStoredClients {
		t.Errorf("sample's commented gateway limits %d %d %v %v %d are not the gateway's defaults",
			u.MaxClients, u.MaxStoredBytesPerClient, u.MessageTTL, u.ClientRetention, u.MaxStoredClients)
	}
	if u.MaxStoredBytes != gateway.DefaultMaxStoredBytesTotal || u.ClientRate != gateway.DefaultClientRate ||
		u.ClientBurst != gateway.DefaultClientBurst || u.SourceRate != gateway.DefaultSourceRate || u.SourceBurst != gateway.DefaultSourceBurst || u.ClientIdleTimeout.Duration != gateway.DefaultIdleTimeout ||
		u.MaxClientsPerIP != gateway.DefaultMaxClientsPerIP || u.RecordClientsAfter.Duration != gateway.DefaultRecordClientsAfter ||
		u.MaxProvisionalClients != gateway.DefaultMaxProvisionalClients ||
		u.MaxHandshakesPerIP != link.DefaultMaxHandshakesPerIP || u.FirstMessageTimeout.Duration != link.DefaultFirstMessageTimeout {
		t.Errorf("sample's commented gateway and link hardening values are not the defaults: %+v", u)
	}
	if u.HTTPMaxConns != DefaultHTTPMaxConns || u.HTTPReadTimeout.Duration != DefaultHTTPReadTimeout ||
		u.HTTPWriteTimeout.Duration != DefaultHTTPWriteTimeout || u.HTTPIdleTimeout.Duration != DefaultHTTPIdleTimeout {
		t.Errorf("sample's commented HTTP limits are not the defaults: %+v", u)
	}
	if c.MetricsListen != "" {
		t.Errorf("sample serves metrics by default on %q", c.MetricsListen)
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
		func(c *Config) { c.NetworkFile = "network.toml" }, // and directory_url: one or the other
		func(c *Config) { c.NetworkFile, c.DirectoryURL = "network.toml", "" },
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

// The gateway limits: zero is the gateway's default, negative values and a
// retention no longer than the TTL are refused with the setting's name.
func TestConfigGatewayLimits(t *testing.T) {
	cases := []struct {
		name string
		toml string
		want string // substring of the error; "" = valid
	}{
		{"absent", "", ""},
		{"zeroes", "max_clients = 0\nmax_stored_bytes_per_client = 0\nmessage_ttl = \"0s\"\nclient_retention = \"0s\"\nmax_stored_clients = 0\n", ""},
		{"all set", "max_clients = 100\nmax_stored_bytes_per_client = 1048576\nmessage_ttl = \"2h\"\nclient_retention = \"48h\"\nmax_stored_clients = 5000\n", ""},
		{"max clients cap", "max_clients = 1048576\n", ""},
		{"long ttl, retention follows", "message_ttl = \"720h\"\n", ""},
		{"retention over default ttl", "client_retention = \"25h\"\n", ""},
		{"short ttl, short retention", "message_ttl = \"1m\"\nclient_retention = \"2m\"\n", ""},

		{"negative max clients", "max_clients = -1\n", "max_clients -1"},
		{"too many clients", "max_clients = 1048577\n", "max_clients 1048577"},
		{"huge max clients", "max_clients = 9223372036854775807\n", "max_clients"},
		{"negative stored bytes", "max_stored_bytes_per_client = -1\n", "max_stored_bytes_per_client -1"},
		{"negative ttl", "message_ttl = \"-1h\"\n", "message_ttl -1h"},
		{"negative retention", "client_retention = \"-1s\"\n", "client_retention -1s"},
		{"negative stored clients", "max_stored_clients = -5\n", "max_stored_clients -5"},
		{"retention equals ttl", "message_ttl = \"48h\"\nclient_retention = \"48h\"\n", "must exceed message_ttl"},
		{"retention below ttl", "message_ttl = \"48h\"\nclient_retention = \"24h\"\n", "client_retention 24h0m0s: must exceed message_ttl 48h0m0s"},
		{"retention below default ttl", "client_retention = \"12h\"\n", "must exceed message_ttl 24h0m0s"},
		{"hardening set", "max_stored_bytes = 1000000\nclient_rate = 50.5\nclient_burst = 10\nclient_idle_timeout = \"1m\"\nmax_clients_per_ip = 4\nrecord_clients_after = \"-1s\"\nmax_handshakes_per_ip = 2\nfirst_message_timeout = \"1s\"\n", ""},
		{"negative total stored", "max_stored_bytes = -1\n", "max_stored_bytes -1"},
		{"negative rate", "client_rate = -1.0\n", "client_rate -1"},
		{"negative burst", "client_burst = -1\n", "client_burst -1"},
		{"negative source rate", "source_rate = -1.0\n", "source_rate -1"},
		{"negative source burst", "source_burst = -1\n", "source_burst -1"},
		{"negative idle", "client_idle_timeout = \"-1s\"\n", "client_idle_timeout -1s"},
		{"negative per ip", "max_clients_per_ip = -1\n", "max_clients_per_ip -1"},
		{"no provisional clients", "max_provisional_clients = -1\n", ""},
		{"bad provisional clients", "max_provisional_clients = -2\n", "max_provisional_clients -2"},
		{"negative handshakes per ip", "max_handshakes_per_ip = -1\n", "max_handshakes_per_ip"},
		{"negative first message", "first_message_timeout = \"-1s\"\n", "first_message_timeout"},
		{"negative http conns", "http_max_conns = -1\n", "http_max_conns"},
		{"negative http idle", "http_idle_timeout = \"-1s\"\n", "http_idle_timeout"},
		{"bad metrics address", "metrics_listen = \"nope\"\n", "metrics listen"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			text := "directory_url = \"http://x\"\ndirectory_key = \"k\"\n" + tc.toml
			if err := os.WriteFile(filepath.Join(dir, ConfigFile), []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := LoadConfig(dir)
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			err = c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && err == nil:
				t.Errorf("validated %+v", c)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Errorf("error %q does not say %q", err, tc.want)
			}
		})
	}
	// Duration syntax errors are caught at load.
	for _, text := range []string{"message_ttl = \"a day\"\n", "client_retention = 7\n", "max_clients = \"many\"\n"} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, ConfigFile), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadConfig(dir); err == nil {
			t.Errorf("%q loaded", text)
		}
	}
}

// WriteConfig leaves zero gateway limits out, so an initialised node keeps
// following the gateway's defaults, and writes set ones so they load back.
func TestConfigGatewayLimitsRoundTrip(t *testing.T) {
	c := DefaultConfig()
	c.DataDir = t.TempDir()
	if err := WriteConfig(c); err != nil {
		t.Fatal(err)
	}
	written, err := os.ReadFile(filepath.Join(c.DataDir, ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"max_clients", "max_stored_bytes_per_client", "message_ttl", "client_retention", "max_stored_clients"} {
		if strings.Contains(string(written), key) {
			t.Errorf("default config writes %s:\n%s", key, written)
		}
	}

	c.DataDir = t.TempDir()
	c.MaxClients, c.MaxStoredBytesPerClient, c.MaxStoredClients = 10, 1<<20, 300
	c.MessageTTL.Duration, c.ClientRetention.Duration = 2*time.Hour, 30*time.Hour
	if err := WriteConfig(c); err != nil {
		t.Fatal(err)
	}
	got, err := LoadConfig(c.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	if got.MaxClients != c.MaxClients || got.MaxStoredBytesPerClient != c.MaxStoredBytesPerClient || got.MaxStoredClients != c.MaxStoredClients ||
		got.MessageTTL != c.MessageTTL || got.ClientRetention != c.ClientRetention {
		t.Errorf("loaded %d %d %v %v %d, wrote %d %d %v %v %d",
			got.MaxClients, got.MaxStoredBytesPerClient, got.MessageTTL, got.ClientRetention, got.MaxStoredClients,
			c.MaxClients, c.MaxStoredBytesPerClient, c.MessageTTL, c.ClientRetention, c.MaxStoredClients)
	}
}

// network_file names the authorities; a relative path is the data
// directory's, and directory_url/directory_key are a network of one.
func TestConfigNetwork(t *testing.T) {
	c := DefaultConfig()
	c.DataDir = t.TempDir()
	text := "threshold = 2\n" +
		"[[authority]]\nname = \"a1\"\nkey = \"" + strings.Repeat("A", 42) + "Q\"\nurl = \"http://192.0.2.1:8000\"\n" +
		"[[authority]]\nname = \"a2\"\nkey = \"" + strings.Repeat("B", 42) + "Q\"\nurl = \"http://192.0.2.2:8000\"\n" +
		"[[authority]]\nname = \"a3\"\nkey = \"" + strings.Repeat("C", 42) + "Q\"\nurl = \"http://192.0.2.3:8000\"\n"
	if err := os.WriteFile(filepath.Join(c.DataDir, "net.toml"), []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	c.NetworkFile = "net.toml"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	n, err := c.Network()
	if err != nil {
		t.Fatal(err)
	}
	if n.Threshold != 2 || len(n.Authorities) != 3 {
		t.Fatalf("network %+v", n)
	}
	c.NetworkFile, c.DirectoryURL, c.DirectoryKey = "", "http://192.0.2.1:8000", strings.Repeat("A", 42)+"Q"
	if n, err = c.Network(); err != nil || n.Threshold != 1 || len(n.Authorities) != 1 || n.Authorities[0].URL != c.DirectoryURL {
		t.Fatalf("directory_url/directory_key: %+v, %v", n, err)
	}
}
