package platform

import (
	"net/netip"
	"testing"
)

// What an address on the uplink makes a local network of. A hostile or
// odd LAN (a /0, a public prefix, a private address with a prefix wider
// than its range) must never put the internet outside the tunnel.
func TestLocalNetOf(t *testing.T) {
	for _, tc := range []struct{ addr, want string }{
		{"192.168.1.23/24", "192.168.1.0/24"},
		{"10.1.2.3/8", "10.0.0.0/8"},
		{"172.20.0.5/16", "172.20.0.0/16"},
		{"169.254.7.7/16", "169.254.0.0/16"},
		{"fd12:3456::2/64", "fd12:3456::/64"},
		{"fe80::1234/64", "fe80::/64"},
		{"192.168.1.23/32", "192.168.1.23/32"},
		// Wider than the private range: the range, not the prefix.
		{"10.1.2.3/4", "10.0.0.0/8"},
		{"10.1.2.3/0", "10.0.0.0/8"},
		{"192.168.1.1/1", "192.168.0.0/16"},
		{"fd00::1/0", "fc00::/7"},
		{"fe80::1/0", "fe80::/10"},
		{"::ffff:192.168.1.5/120", "192.168.1.0/24"},
		// Not local networks at all.
		{"198.51.100.2/24", ""},
		{"203.0.113.9/0", ""},
		{"100.64.1.1/10", ""}, // shared address space: the ISP's, not the LAN
		{"2001:db8::2/64", ""},
		{"::/0", ""},
		{"0.0.0.0/0", ""},
		{"fec0::1/64", ""},
		{"172.32.0.1/16", ""},
	} {
		got, ok := localNetOf(netip.MustParsePrefix(tc.addr))
		if tc.want == "" {
			if ok {
				t.Errorf("%s became the local network %s", tc.addr, got)
			}
			continue
		}
		if !ok || got != netip.MustParsePrefix(tc.want) {
			t.Errorf("%s: local network %v %v, want %s", tc.addr, got, ok, tc.want)
		}
	}
}

func TestKillSwitchRulesRefuseAPublicLAN(t *testing.T) {
	for _, n := range []LocalNet{
		{"eth0", netip.MustParsePrefix("0.0.0.0/0")},
		{"eth0", netip.MustParsePrefix("::/0")},
		{"eth0", netip.MustParsePrefix("10.0.0.0/7")},
		{"eth0", netip.MustParsePrefix("198.51.100.0/24")},
		{"eth0", netip.MustParsePrefix("::ffff:192.168.1.0/120")},
		{"eth0", netip.Prefix{}},
		{"", netip.MustParsePrefix("192.168.1.0/24")},
		{"a/b", netip.MustParsePrefix("192.168.1.0/24")},
	} {
		if err := (KillSwitchRules{LAN: []LocalNet{n}}).validate(); err == nil {
			t.Errorf("kill switch rules with the local network %+v accepted", n)
		}
	}
	ok := KillSwitchRules{LAN: []LocalNet{
		{"eth0", netip.MustParsePrefix("192.168.1.0/24")},
		{"wlan0", netip.MustParsePrefix("fe80::/64")},
		{"wlan0", netip.MustParsePrefix("fd00::/8")},
	}}
	if err := ok.validate(); err != nil {
		t.Errorf("private local networks refused: %v", err)
	}
}
