package exit

import (
	"net/netip"
	"testing"

	"github.com/nym-go/nym/platform"
)

func TestRouterPolicy(t *testing.T) {
	op, err := platform.ParseExitPolicy("reject 203.0.113.0/24:*\naccept *:*")
	if err != nil {
		t.Fatal(err)
	}
	allow := []netip.Prefix{netip.MustParsePrefix("192.168.50.0/24")}
	own := []netip.Addr{netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("2001:db8:1::1")}
	pol := routerPolicy(op, allow, own)
	for _, c := range []struct {
		dst   string
		proto uint8
		want  bool
	}{
		{"198.51.100.2:80", 6, true},
		{"198.51.100.1:80", 6, false},    // the exit host itself
		{"[2001:db8:1::1]:22", 6, false}, // the exit host itself, IPv6
		{"198.51.100.2:25", 6, false},    // SMTP
		{"198.51.100.2:25", 17, true},    // port 25 is refused for TCP only
		{"10.0.0.7:80", 6, false},        // another client
		{"127.0.0.1:80", 6, false},       // loopback
		{"192.168.1.1:53", 17, false},    // private
		{"192.168.50.9:53", 17, true},    // private, but allowed by the operator
		{"203.0.113.5:443", 6, false},    // the operator's list
		{"[fc00::5]:80", 6, false},       // another client, IPv6
		{"[2001:db8::1]:443", 6, true},   // public enough for the policy
		{"[::ffff:10.1.1.1]:80", 6, false},
		// Issue 10: the special-purpose registries, and ways around them.
		{"198.51.100.2:465", 6, false},          // SMTP submission (TLS)
		{"198.51.100.2:587", 6, false},          // SMTP submission
		{"198.51.100.2:587", 17, true},          // ... for TCP only
		{"[64:ff9b::10.1.1.1]:80", 6, false},    // NAT64 of a private address
		{"[64:ff9b::192.168.1.1]:80", 6, false}, // NAT64 of a private address
		{"[64:ff9b::c000:201]:80", 6, true},     // NAT64 of 192.0.2.1: public enough
		{"[64:ff9b:1::1]:80", 6, false},         // local-use NAT64
		{"[2002:c0a8:101::1]:80", 6, false},     // 6to4 of 192.168.1.1
		{"[2002:7f00:1::1]:80", 6, false},       // 6to4 of 127.0.0.1
		{"[2002:c000:201::1]:80", 6, true},      // 6to4 of 192.0.2.1
		{"[2001:0:4136:e378::1]:80", 6, false},  // Teredo
		{"[::ffff:198.51.100.2]:80", 6, false},  // IPv4-mapped: never on the wire
		{"[::10.1.1.1]:80", 6, false},           // IPv4-compatible (deprecated)
		{"192.0.0.8:80", 6, false},              // IETF protocol assignments
		{"198.18.0.1:80", 6, false},             // benchmarking
		{"198.19.255.255:80", 6, false},         // benchmarking
		{"192.88.99.1:80", 6, false},            // 6to4 relay anycast (deprecated)
		{"255.255.255.255:80", 17, false},       // limited broadcast
		{"[fec0::1]:80", 6, false},              // site-local (deprecated)
		{"[100::1]:80", 6, false},               // discard-only
		{"[2001:2::1]:80", 6, false},            // benchmarking
		{"[2001:10::1]:80", 6, false},           // ORCHID (deprecated)
		{"[5f00::1]:80", 6, false},              // SRv6 SIDs
		{"192.31.196.1:53", 17, true},           // AS112: globally reachable
		{"[2001:4:112::1]:53", 17, true},        // AS112, IPv6
	} {
		got, reason := pol(netip.MustParseAddrPort(c.dst), c.proto)
		if got != c.want {
			t.Errorf("%s/%d: allowed %v (%q), want %v", c.dst, c.proto, got, reason, c.want)
		}
		if !got && reason == "" {
			t.Errorf("%s/%d: refused without a reason", c.dst, c.proto)
		}
	}
}

func TestNewChecksConfig(t *testing.T) {
	good := Config{DataDir: t.TempDir(), DirectoryURL: "http://x", DirectoryKey: make([]byte, 32), Gateway: [32]byte{1}}
	if _, err := New(good); err != nil {
		t.Fatalf("New: %v", err)
	}
	for name, edit := range map[string]func(*Config){
		"no directory": func(c *Config) { c.DirectoryURL = "" },
		"bad key":      func(c *Config) { c.DirectoryKey = nil },
		"no gateway":   func(c *Config) { c.Gateway = [32]byte{} },
		"no data dir":  func(c *Config) { c.DataDir = "" },
	} {
		c := good
		edit(&c)
		if _, err := New(c); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
}

func TestServiceLoopixHasNoRateLimit(t *testing.T) {
	l := ServiceLoopix()
	if l.SendInterval != 0 || l.CoverInterval != 0 || l.HopDelay <= 0 {
		t.Fatalf("ServiceLoopix = %+v", l)
	}
}
