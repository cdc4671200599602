package main

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/vpn"
)

const (
	defaultSocket = "/run/nymvpn/nymvpn.sock"
	// stateDir keeps the record of host changes; not under /run, so that
	// after a reboot the daemon still finds and restores the resolver
	// configuration it replaced. Root's alone (platform refuses otherwise).
	stateDir     = "/var/lib/nymvpn"
	defaultState = stateDir + "/platform.state"
)

// options are the global flags.
type options struct {
	socket, logLevel string
}

func (o *options) logger() (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", o.logLevel)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})), nil
}

// maxDNS bounds the resolvers in one request (resolv.conf reads three).
const maxDNS = 8

// connectRequest is what connect asks the daemon for; it travels as JSON.
type connectRequest struct {
	// Network is the network file's text (the command reads the file, so
	// the daemon opens no path a user names); DirectoryURL and DirectoryKey
	// are the shorthand for a network of one. One or the other.
	Network      string       `json:"network,omitempty"`
	DirectoryURL string       `json:"directory,omitempty"`
	DirectoryKey string       `json:"directory_key,omitempty"`
	Entry        string       `json:"entry,omitempty"`
	Exit         string       `json:"exit,omitempty"`
	Profile      string       `json:"profile"`
	Mode         string       `json:"mode,omitempty"` // anonymous ("") or fast
	DNS          []netip.Addr `json:"dns,omitempty"`
	KillSwitch   bool         `json:"kill_switch"`
	// AllowLAN lets the uplink's local networks (private, link-local and
	// unique local prefixes on that link) bypass the tunnel and the kill
	// switch: the printer, a NAS. Off by default.
	AllowLAN bool `json:"allow_lan,omitempty"`

	dnsText     []string // --dns, parsed into DNS by check
	networkFile string   // --network, read into Network by check
	// network is the authorities: Network parsed, or the network of one
	// directory; set by check.
	network *directory.Network
}

func (r *connectRequest) flags(f *pflag.FlagSet) {
	f.StringVar(&r.networkFile, "network", "", "network file naming the directory authorities and their threshold (or --directory and --directory-key)")
	f.StringVar(&r.DirectoryURL, "directory", "", "URL of the nym-api directory: a network of one (with --directory-key)")
	f.StringVar(&r.DirectoryKey, "directory-key", "", "the directory's public key")
	f.StringVar(&r.Entry, "entry", "", "identity of the entry gateway (default: random)")
	f.StringVar(&r.Exit, "exit", "", "identity of the exit gateway (default: random)")
	f.StringVar(&r.Mode, "mode", modeAnonymous, "anonymous (through the mixnet) or fast (two hops of WireGuard: the entry sees who, the exit sees where, no mixing)")
	f.StringVar(&r.Profile, "profile", "default", profileHelp())
	f.StringSliceVar(&r.dnsText, "dns", []string{"1.1.1.1", "9.9.9.9"}, "DNS resolvers to use through the tunnel")
	f.BoolVar(&r.KillSwitch, "kill-switch", true, "block all traffic outside the tunnel while connecting, connected or reconnecting")
	f.BoolVar(&r.AllowLAN, "allow-lan", false, "let the uplink's local networks (private, link-local and unique local prefixes on that link) bypass the tunnel and the kill switch")
}

// check validates a request before anything is touched.
func (r *connectRequest) check() error {
	if err := r.checkDirectory(); err != nil {
		return err
	}
	switch r.Mode {
	case "", modeAnonymous:
		r.Mode = modeAnonymous
	case modeFast:
	default:
		return fmt.Errorf("--mode %q: want anonymous or fast", r.Mode)
	}
	if _, err := vpn.ProfileByName(r.Profile); err != nil {
		return err
	}
	// dnsText is set by the command line only: a request that crossed the
	// control socket as JSON carries DNS parsed already.
	if r.dnsText != nil {
		r.DNS = r.DNS[:0]
	}
	for _, s := range r.dnsText {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return fmt.Errorf("--dns %q: %w", s, err)
		}
		r.DNS = append(r.DNS, a)
	}
	if len(r.DNS) > maxDNS {
		return fmt.Errorf("--dns: %d resolvers, at most %d", len(r.DNS), maxDNS)
	}
	for _, a := range r.DNS {
		if !a.IsValid() || a.IsUnspecified() || a.IsMulticast() {
			return fmt.Errorf("--dns %v: not a resolver address", a)
		}
	}
	for _, s := range []string{r.Entry, r.Exit} {
		if s != "" {
			if _, err := directory.ParseKey(s); err != nil {
				return fmt.Errorf("gateway %q: %w", s, err)
			}
		}
	}
	return nil
}

// checkDirectory reads --network and sets r.network: the network file's
// authorities, or the one directory --directory and --directory-key name.
func (r *connectRequest) checkDirectory() error {
	if r.networkFile != "" {
		text, err := os.ReadFile(r.networkFile)
		if err != nil {
			return fmt.Errorf("--network: %w", err)
		}
		r.Network = string(text)
	}
	switch {
	case r.Network != "" && (r.DirectoryURL != "" || r.DirectoryKey != ""):
		return fmt.Errorf("--network and --directory/--directory-key: give one or the other")
	case r.Network != "":
		n, err := directory.ParseNetwork([]byte(r.Network))
		if err != nil {
			return fmt.Errorf("--network: %w", err)
		}
		r.network = n
	case r.DirectoryURL == "" || r.DirectoryKey == "":
		return fmt.Errorf("--network, or --directory and --directory-key, are required")
	default:
		key, err := directory.ParseKey(r.DirectoryKey)
		if err != nil {
			return fmt.Errorf("--directory-key: %w", err)
		}
		r.network = directory.SingleAuthority(r.DirectoryURL, key)
		if err := r.network.Validate(); err != nil {
			return fmt.Errorf("--directory: %w", err)
		}
	}
	return nil
}

// profileHelp is --profile's help: each profile with what it costs while
// idle, since cover traffic runs whether or not the tunnel is used.
func profileHelp() string {
	d, p := vpn.DefaultProfile(), vpn.AnonymousPlusProfile()
	return fmt.Sprintf("anonymous mode's mixing: default (Nym's parameters; spends %s), "+
		"anonymous-plus (the same mixing at %.0f packets/s, faster; spends %s) or nodelay (WEAKER ANONYMITY, no cover)",
		d.IdleCost(), float64(time.Second)/float64(p.Loopix.SendInterval), p.IdleCost())
}
