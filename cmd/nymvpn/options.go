package main

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"

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
	DirectoryURL string       `json:"directory"`
	DirectoryKey string       `json:"directory_key"`
	Entry        string       `json:"entry,omitempty"`
	Exit         string       `json:"exit,omitempty"`
	Profile      string       `json:"profile"`
	DNS          []netip.Addr `json:"dns,omitempty"`
	KillSwitch   bool         `json:"kill_switch"`

	dnsText []string // --dns, parsed into DNS by check
}

func (r *connectRequest) flags(f *pflag.FlagSet) {
	f.StringVar(&r.DirectoryURL, "directory", "", "URL of the nym-api directory (required)")
	f.StringVar(&r.DirectoryKey, "directory-key", "", "the directory's public key (required)")
	f.StringVar(&r.Entry, "entry", "", "identity of the entry gateway (default: random)")
	f.StringVar(&r.Exit, "exit", "", "identity of the exit gateway (default: random)")
	f.StringVar(&r.Profile, "profile", "default", "mixing: default (Nym's parameters) or fast (WEAKER ANONYMITY)")
	f.StringSliceVar(&r.dnsText, "dns", []string{"1.1.1.1", "9.9.9.9"}, "DNS resolvers to use through the tunnel")
	f.BoolVar(&r.KillSwitch, "kill-switch", true, "block all traffic outside the tunnel while connecting, connected or reconnecting")
}

// check validates a request before anything is touched.
func (r *connectRequest) check() error {
	if r.DirectoryURL == "" || r.DirectoryKey == "" {
		return fmt.Errorf("--directory and --directory-key are required")
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
