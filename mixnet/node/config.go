package node

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/nym-go/nym/internal/keyfile"
	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/gateway"
	"github.com/nym-go/nym/mixnet/mixnode"
	"github.com/nym-go/nym/mixnet/replay"
)

// Mode is what a node offers the directory.
type Mode string

// The modes. Auto offers every role and follows the directory's assignment
// from epoch to epoch without a restart.
const (
	ModeMixnode      Mode = "mixnode"
	ModeEntryGateway Mode = "entry-gateway"
	ModeExitGateway  Mode = "exit-gateway"
	ModeAuto         Mode = "auto"
)

// MinReplayFlushInterval is the shortest replay_flush_interval accepted.
const MinReplayFlushInterval = 10 * time.Second

// ConfigFile is the settings file's name inside the data directory.
const ConfigFile = "config.toml"

// Config is a node's settings: the TOML file in its data directory, with
// command-line flags laid over it.
type Config struct {
	DataDir string `toml:"-"`
	Mode    Mode   `toml:"mode"`

	// NetworkFile is the network file (directory.Network) naming the
	// directory authorities and their threshold; a relative path is taken
	// from the data directory. DirectoryURL and DirectoryKey are the
	// shorthand for a network of one authority; set one or the other.
	NetworkFile  string `toml:"network_file,omitempty"`
	DirectoryURL string `toml:"directory_url,omitempty"`
	DirectoryKey string `toml:"directory_key,omitempty"` // the directory's ed25519 key, base64url

	MixnetListen  string `toml:"mixnet_listen"`  // node↔node links
	ClientsListen string `toml:"clients_listen"` // client connections (gateways)
	HTTPListen    string `toml:"http_listen"`    // the public API
	// MetricsListen is where /metrics is served, apart from the public API:
	// the counters tell an observer how busy the node is and when, which
	// helps traffic analysis. Empty (the default) serves no metrics; set it
	// to a loopback or private address, e.g. 127.0.0.1:9100, to scrape.
	MetricsListen string `toml:"metrics_listen,omitempty"`
	AnnounceHost  string `toml:"announce_host"` // host others reach us at; default: the listen host

	MaxDelay      Duration `toml:"max_delay"`      // cap on the delay a sender may ask for
	Workers       int      `toml:"workers"`        // unwrap workers; 0 = one per CPU
	QueueLen      int      `toml:"queue_len"`      // packets waiting to be unwrapped
	RefreshPeriod Duration `toml:"refresh_period"` // how often to fetch the topology and re-register

	// Replay filters: one per held Sphinx key, sized for ReplayCapacity tags
	// at false-positive rate ReplayFPRate, saved in ReplayDirName under the
	// data directory every ReplayFlushInterval and at shutdown.
	// ReplayCapacity is signed so that a negative value in the file is
	// reported as such rather than wrapping to an enormous capacity.
	ReplayCapacity      int64    `toml:"replay_capacity"`
	ReplayFPRate        float64  `toml:"replay_fp_rate"`
	ReplayFlushInterval Duration `toml:"replay_flush_interval"`
	// ReplayPrefault makes each new key's replay filter take all its memory
	// when the key is installed (mixnode.Config.ReplayPrefault). Off by
	// default, so that test and local networks of many nodes on one host do
	// not hold every filter resident; a busy production node should turn it
	// on: its filter is resident within minutes anyway, and first-touch page
	// faults cost 8–12 µs per fresh tag until then (BenchmarkReplaySeenCold).
	ReplayPrefault bool `toml:"replay_prefault"`

	// RequirePQLinks makes the node refuse classical (X25519-only) link
	// handshakes, from nodes and clients alike, and not dial peers that
	// publish no ML-KEM key; it announces so in its descriptor. Off by
	// default: links are hybrid whenever both ends publish a KEM key (every
	// node of this version does), classical with older nodes during an
	// upgrade. Turn it on once the whole network runs post-quantum links.
	RequirePQLinks bool `toml:"require_pq_links,omitempty"`

	// WireGuard (fast mode), for gateways (a mixnode ignores them); see
	// contrib/nym-node.toml.
	// WireGuardListen is IP:port of the door, UDP for WireGuard and TCP for
	// registration; its port is announced (wg_addr) with announce_host or
	// the listen IP. Empty (the default) runs no WireGuard. An entry
	// gateway's door is an entry's; an exit gateway's (and an auto node's)
	// is an exit's, on its own TUN under the IP router's exit networking.
	WireGuardListen string `toml:"wireguard_listen,omitempty"`
	// WireGuardPeerTimeout removes a peer without a handshake for this
	// long (default 3m) and hands its addresses out again.
	WireGuardPeerTimeout Duration `toml:"wireguard_peer_timeout,omitempty"`
	// WireGuardMaxFlows bounds an entry's relay sockets per client
	// (default 16).
	WireGuardMaxFlows int `toml:"wireguard_max_flows,omitzero"`
	// WireGuardMaxPeersPerIP bounds an entry's peers registered from one
	// client address (IPv4, or IPv6 /64); default 16.
	WireGuardMaxPeersPerIP int `toml:"wireguard_max_peers_per_ip,omitzero"`
	// WireGuardMaxRelayHandshakes bounds an exit's registration handshakes
	// at once from one gateway's address: the clients one entry registers
	// with it at the same moment (default 64; any other address keeps 8).
	WireGuardMaxRelayHandshakes int `toml:"wireguard_max_relay_handshakes,omitzero"`
	// WireGuardTUN names an exit's WireGuard TUN (default nymwg0);
	// WireGuardRangeV4 and WireGuardRangeV6 are the client ranges of the
	// door (defaults: exit 10.1.0.0/16 and fc00::1:0/112, entry
	// 10.2.0.0/16 and fc00::2:0/112; never the IP router's 10.0.0.0/16 and
	// fc00::/112).
	WireGuardTUN     string `toml:"wireguard_tun,omitempty"`
	WireGuardRangeV4 string `toml:"wireguard_range_v4,omitempty"`
	WireGuardRangeV6 string `toml:"wireguard_range_v6,omitempty"`

	// Gateway limits, used when the node offers a gateway role; zero (or
	// absent) is the gateway's own default, see mixnet/gateway.Config. They
	// are signed so that a negative value in the file is reported as such
	// rather than wrapping to an enormous limit, and left out of a written
	// file when zero so that it keeps following the gateway's defaults
	// (omitzero for numbers, omitempty for Duration: what the TOML encoder
	// honours for each).
	MaxClients              int      `toml:"max_clients,omitzero"`                 // connected clients; one more is refused
	MaxStoredBytesPerClient int64    `toml:"max_stored_bytes_per_client,omitzero"` // held for one offline client; beyond it packets are dropped
	MessageTTL              Duration `toml:"message_ttl,omitempty"`                // how long a stored packet waits for its client
	ClientRetention         Duration `toml:"client_retention,omitempty"`           // how long an idle client with nothing stored stays recorded
	MaxStoredClients        int      `toml:"max_stored_clients,omitzero"`          // client identities recorded in the gateway's database
	MaxStoredBytes          int64    `toml:"max_stored_bytes,omitzero"`            // stored for all clients together; past it the largest stores lose their oldest
	ClientRate              float64  `toml:"client_rate,omitzero"`                 // packets/s one client may send into the mixnet
	ClientBurst             int      `toml:"client_burst,omitzero"`                // packets one client may send at once
	SourceRate              float64  `toml:"source_rate,omitzero"`                 // packets/s all clients of one address may send together
	SourceBurst             int      `toml:"source_burst,omitzero"`                // packets they may send at once
	ClientIdleTimeout       Duration `toml:"client_idle_timeout,omitempty"`        // a client link with nothing received this long is closed
	MaxClientsPerIP         int      `toml:"max_clients_per_ip,omitzero"`          // client links from one address (IPv6: /64)
	// RecordClientsAfter is how long a new client identity must stay
	// connected to show life; until then it may hold one of
	// MaxProvisionalClients records, or none. Negative records every
	// client at the handshake.
	RecordClientsAfter    Duration `toml:"record_clients_after,omitempty"`
	MaxProvisionalClients int      `toml:"max_provisional_clients,omitzero"`
	// DownstreamMaxBytes caps one client's constant-rate downstream, the
	// one its client asks for to hide its downloads (bytes/s); -1 refuses
	// shaping. DownstreamQueue bounds the messages waiting for a shaped
	// client's next slots; the rest wait in the store.
	DownstreamMaxBytes float64 `toml:"client_downstream_max_bytes,omitzero"`
	DownstreamQueue    int     `toml:"client_downstream_queue,omitzero"`

	// RequireTickets makes the gateway serve only clients that pay with
	// anonymous bandwidth tickets (gateway.TicketConfig). TicketGrace is how
	// long a connection may go without a valid ticket before it is closed,
	// TicketReportInterval how often spent serials are reported to and
	// fetched from the authorities (at most gateway.MaxTicketReportInterval),
	// and TicketQuotaBytes overrides the bytes one ticket buys: for test
	// networks only (for the WireGuard door's tickets too). The WireGuard
	// door requires tickets with it (wireguard-entry or -exit by the door's
	// role, their types' quota per peer), checked and recorded by the same
	// gateway (wgtickets.go).
	RequireTickets       bool     `toml:"require_tickets,omitempty"`
	TicketGrace          Duration `toml:"ticket_grace,omitempty"`
	TicketReportInterval Duration `toml:"ticket_report_interval,omitempty"`
	TicketQuotaBytes     int64    `toml:"ticket_quota_bytes,omitzero"`

	// Link limits on both the mixnet and the clients port; zero is the
	// link package's default. Handshakes from one address beyond
	// MaxHandshakesPerIP are refused, and a connection that has not begun
	// its handshake within FirstMessageTimeout is closed, so silent
	// connections cannot hold every slot.
	MaxHandshakesPerIP  int      `toml:"max_handshakes_per_ip,omitzero"`
	FirstMessageTimeout Duration `toml:"first_message_timeout,omitempty"`

	// HTTP API and metrics limits; zero is the default below. Connections
	// past HTTPMaxConns are closed at once; idle keep-alive connections
	// are closed after HTTPIdleTimeout.
	HTTPMaxConns     int      `toml:"http_max_conns,omitzero"`
	HTTPReadTimeout  Duration `toml:"http_read_timeout,omitempty"`
	HTTPWriteTimeout Duration `toml:"http_write_timeout,omitempty"`
	HTTPIdleTimeout  Duration `toml:"http_idle_timeout,omitempty"`

	// TraceFile, if set, is a file the node creates (mode 0600; it refuses
	// one that exists) and into which its mixer, gateway and exit record
	// every packet's time, hops and size (package anonymity's trace
	// format), for measuring anonymity in a test network. Off by default,
	// and never to be set in production: it writes down the very timing
	// the mixnet exists to hide. A relative path is under the data
	// directory.
	TraceFile string `toml:"trace_file,omitempty"`
}

// Defaults of the HTTP settings. The API answers small JSON documents to
// the directory's probes and to the curious, so a request has 10 s to
// arrive and its answer 10 s to leave, and a keep-alive connection may idle
// a minute; 256 connections is many times what the directory and a
// monitoring system need, and far below a process's file descriptors.
const (
	DefaultHTTPMaxConns     = 256
	DefaultHTTPReadTimeout  = 10 * time.Second
	DefaultHTTPWriteTimeout = 10 * time.Second
	DefaultHTTPIdleTimeout  = time.Minute
)

// MaxGatewayClients is the largest max_clients accepted: each client holds a
// connection, so more than this is beyond any one host, and the gateway's
// connection bound (max_clients plus room for handshakes) stays far from
// overflowing.
const MaxGatewayClients = 1 << 20

// ReplayDirName is the subdirectory of the data directory holding the replay
// filter files.
const ReplayDirName = "replay"

// ReplayDir is where the node keeps its replay filter files.
func (c *Config) ReplayDir() string { return filepath.Join(c.DataDir, ReplayDirName) }

// TracePath is the anonymity trace file (trace_file), under the data
// directory when relative; "" when tracing is off.
func (c *Config) TracePath() string {
	if c.TraceFile == "" || filepath.IsAbs(c.TraceFile) {
		return c.TraceFile
	}
	return filepath.Join(c.DataDir, c.TraceFile)
}

// Duration is a time.Duration written as "10s" in TOML.
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	d.Duration = v
	return err
}

// MarshalText writes a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// DefaultConfig has the values a node runs with when nothing says otherwise
// (Nym's ports and the 10 s delay cap).
func DefaultConfig() Config {
	return Config{
		Mode:          ModeMixnode,
		MixnetListen:  "0.0.0.0:1789",
		HTTPListen:    "0.0.0.0:8080",
		ClientsListen: "0.0.0.0:9000",
		MaxDelay:      Duration{10 * time.Second},
		QueueLen:      4096,
		RefreshPeriod: Duration{30 * time.Second},

		ReplayCapacity:      int64(replay.DefaultCapacity),
		ReplayFPRate:        replay.DefaultFPRate,
		ReplayFlushInterval: Duration{mixnode.DefaultReplayFlushInterval},
	}
}

// LoadConfig reads dir/config.toml over the defaults; a missing file is fine.
func LoadConfig(dir string) (Config, error) {
	c := DefaultConfig()
	c.DataDir = dir
	path := filepath.Join(dir, ConfigFile)
	md, err := toml.DecodeFile(path, &c)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		return c, fmt.Errorf("config %s: unknown setting %q", path, und[0].String())
	}
	return c, nil
}

// WriteConfig saves c as dir/config.toml (mode 0600, whole or not at all),
// refusing to overwrite.
func WriteConfig(c Config) error {
	path := filepath.Join(c.DataDir, ConfigFile)
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(c); err != nil {
		return fmt.Errorf("write config %s: %w", path, err)
	}
	if err := keyfile.Create(path, buf.Bytes()); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	return nil
}

// withDefaults checks c (Validate) and returns it with the zero settings the
// node applies itself, the HTTP limits, at their defaults. Zero gateway and
// link settings stay zero: those packages fill them in.
func (c Config) withDefaults() (Config, error) {
	if err := c.Validate(); err != nil {
		return c, err
	}
	if c.HTTPMaxConns == 0 {
		c.HTTPMaxConns = DefaultHTTPMaxConns
	}
	if c.HTTPReadTimeout.Duration == 0 {
		c.HTTPReadTimeout.Duration = DefaultHTTPReadTimeout
	}
	if c.HTTPWriteTimeout.Duration == 0 {
		c.HTTPWriteTimeout.Duration = DefaultHTTPWriteTimeout
	}
	if c.HTTPIdleTimeout.Duration == 0 {
		c.HTTPIdleTimeout.Duration = DefaultHTTPIdleTimeout
	}
	return c, nil
}

// Validate reports the first setting that cannot work.
func (c *Config) Validate() error {
	switch c.Mode {
	case ModeMixnode, ModeEntryGateway, ModeExitGateway, ModeAuto:
	default:
		return fmt.Errorf("mode %q: want mixnode, entry-gateway, exit-gateway or auto", c.Mode)
	}
	if c.DataDir == "" {
		return errors.New("no data directory")
	}
	switch {
	case c.NetworkFile != "" && (c.DirectoryURL != "" || c.DirectoryKey != ""):
		return errors.New("network_file and directory_url/directory_key both set: use the network file alone (directory_url and directory_key are the shorthand for a network of one)")
	case c.NetworkFile == "" && (c.DirectoryURL == "" || c.DirectoryKey == ""):
		return errors.New("no directory: set network_file, or directory_url and directory_key both")
	}
	addrs := map[string]string{"mixnet listen": c.MixnetListen, "http listen": c.HTTPListen}
	if c.Mode != ModeMixnode {
		addrs["clients listen"] = c.ClientsListen
	}
	if c.MetricsListen != "" {
		addrs["metrics listen"] = c.MetricsListen
	}
	if err := c.validateWireGuard(); err != nil {
		return err
	}
	for name, a := range addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("%s address %q: %w", name, a, err)
		}
	}
	if c.MaxDelay.Duration <= 0 {
		return fmt.Errorf("max delay %v: must be positive", c.MaxDelay)
	}
	if c.QueueLen <= 0 || c.Workers < 0 {
		return fmt.Errorf("queue length %d and workers %d: must be positive", c.QueueLen, c.Workers)
	}
	if c.RefreshPeriod.Duration <= 0 {
		return fmt.Errorf("refresh period %v: must be positive", c.RefreshPeriod)
	}
	if c.ReplayCapacity <= 0 {
		return fmt.Errorf("replay_capacity %d: must be positive", c.ReplayCapacity)
	}
	if _, err := replay.BytesFor(uint64(c.ReplayCapacity), c.ReplayFPRate); err != nil {
		return fmt.Errorf("replay_capacity %d, replay_fp_rate %g: %w", c.ReplayCapacity, c.ReplayFPRate, err)
	}
	// Saving a default-size filter writes 167 MB; more often than this
	// would keep the disk busy for little gain.
	if c.ReplayFlushInterval.Duration < MinReplayFlushInterval {
		return fmt.Errorf("replay flush interval %v: must be at least %v", c.ReplayFlushInterval, MinReplayFlushInterval)
	}
	for name, v := range map[string]int64{
		"max_handshakes_per_ip": int64(c.MaxHandshakesPerIP), "http_max_conns": int64(c.HTTPMaxConns),
		"first_message_timeout": int64(c.FirstMessageTimeout.Duration), "http_read_timeout": int64(c.HTTPReadTimeout.Duration),
		"http_write_timeout": int64(c.HTTPWriteTimeout.Duration), "http_idle_timeout": int64(c.HTTPIdleTimeout.Duration),
	} {
		if v < 0 {
			return fmt.Errorf("%s: must not be negative (0 is the default)", name)
		}
	}
	return c.validateGateway()
}

// validateGateway checks the gateway limits as the gateway will apply them,
// zero standing for its default, so that a node refuses them at start with
// the setting's name rather than failing inside the gateway.
func (c *Config) validateGateway() error {
	switch {
	case c.MaxClients < 0 || c.MaxClients > MaxGatewayClients:
		return fmt.Errorf("max_clients %d: must be between 0 (the default, %d) and %d", c.MaxClients, gateway.DefaultMaxClients, MaxGatewayClients)
	case c.MaxStoredBytesPerClient < 0:
		return fmt.Errorf("max_stored_bytes_per_client %d: must not be negative (0 is the default, %d)", c.MaxStoredBytesPerClient, int64(gateway.DefaultMaxStoredBytes))
	case c.MessageTTL.Duration < 0:
		return fmt.Errorf("message_ttl %v: must not be negative (0 is the default, %v)", c.MessageTTL, gateway.DefaultMessageTTL)
	case c.ClientRetention.Duration < 0:
		return fmt.Errorf("client_retention %v: must not be negative (0 is the default, the longer of %v and 7 × message_ttl)", c.ClientRetention, gateway.DefaultClientRetention)
	case c.MaxStoredClients < 0:
		return fmt.Errorf("max_stored_clients %d: must not be negative (0 is the default, %d)", c.MaxStoredClients, gateway.DefaultMaxStoredClients)
	case c.MaxStoredBytes < 0:
		return fmt.Errorf("max_stored_bytes %d: must not be negative (0 is the default, %d)", c.MaxStoredBytes, int64(gateway.DefaultMaxStoredBytesTotal))
	case c.ClientRate < 0 || c.ClientBurst < 0:
		return fmt.Errorf("client_rate %g, client_burst %d: must not be negative (0 is the default, %d and %d)", c.ClientRate, c.ClientBurst, gateway.DefaultClientRate, gateway.DefaultClientBurst)
	case c.SourceRate < 0 || c.SourceBurst < 0:
		return fmt.Errorf("source_rate %g, source_burst %d: must not be negative (0 is the default, %d and %d)", c.SourceRate, c.SourceBurst, gateway.DefaultSourceRate, gateway.DefaultSourceBurst)
	case c.ClientIdleTimeout.Duration < 0:
		return fmt.Errorf("client_idle_timeout %v: must not be negative (0 is the default, %v)", c.ClientIdleTimeout, gateway.DefaultIdleTimeout)
	case c.DownstreamMaxBytes < -1 || c.DownstreamQueue < 0:
		return fmt.Errorf("client_downstream_max_bytes %g, client_downstream_queue %d: must be -1 (no shaping) or more, and not negative (0 is the default, %d and %d)",
			c.DownstreamMaxBytes, c.DownstreamQueue, gateway.DefaultMaxDownstreamBytes, gateway.DefaultDownstreamQueue)
	case c.MaxProvisionalClients < -1:
		return fmt.Errorf("max_provisional_clients %d: must be -1 (none), 0 (the default, %d) or positive", c.MaxProvisionalClients, gateway.DefaultMaxProvisionalClients)
	case c.MaxClientsPerIP < 0:
		return fmt.Errorf("max_clients_per_ip %d: must not be negative (0 is the default, %d)", c.MaxClientsPerIP, gateway.DefaultMaxClientsPerIP)
	case c.TicketGrace.Duration < 0:
		return fmt.Errorf("ticket_grace %v: must not be negative (0 is the default, %v)", c.TicketGrace, gateway.DefaultTicketGrace)
	case c.TicketReportInterval.Duration < 0 || c.TicketReportInterval.Duration > gateway.MaxTicketReportInterval:
		return fmt.Errorf("ticket_report_interval %v: must be between 0 (the default, %v) and %v", c.TicketReportInterval, gateway.DefaultTicketReportInterval, gateway.MaxTicketReportInterval)
	case c.TicketQuotaBytes < 0:
		return fmt.Errorf("ticket_quota_bytes %d: must not be negative (0: what the ticket type buys)", c.TicketQuotaBytes)
	}
	ttl := c.MessageTTL.Duration
	if ttl == 0 {
		ttl = gateway.DefaultMessageTTL
	}
	// A zero retention follows the TTL (gateway.Config.ClientRetention), so
	// only one that is set can be too short.
	if r := c.ClientRetention.Duration; r != 0 && r <= ttl {
		return fmt.Errorf("client_retention %v: must exceed message_ttl %v, so that a client is remembered past its last stored packet", r, ttl)
	}
	return nil
}

// Network returns the directory authorities the node follows: the network
// file's, or the network of one that directory_url and directory_key name.
func (c *Config) Network() (*directory.Network, error) {
	if c.NetworkFile == "" {
		key, err := directory.ParseKey(c.DirectoryKey)
		if err != nil {
			return nil, fmt.Errorf("directory key %q: %w", c.DirectoryKey, err)
		}
		n := directory.SingleAuthority(c.DirectoryURL, key)
		if err := n.Validate(); err != nil {
			return nil, fmt.Errorf("directory: %w", err)
		}
		return n, nil
	}
	path := c.NetworkFile
	if !filepath.IsAbs(path) {
		path = filepath.Join(c.DataDir, path)
	}
	return directory.LoadNetwork(path)
}

// announce returns the host:port others use for listen address a.
func (c *Config) announce(a string) string {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return a
	}
	if c.AnnounceHost != "" {
		host = c.AnnounceHost
	}
	return net.JoinHostPort(host, port)
}
