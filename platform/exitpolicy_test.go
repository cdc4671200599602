package platform

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func TestParseExitPolicy(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []ExitRule
	}{
		{"", nil},
		{"# only a comment\n\n", nil},
		{"accept 1.2.3.0/24:80-443", []ExitRule{{true, pfx("1.2.3.0/24"), 80, 443}}},
		{"reject *:*", []ExitRule{{false, netip.Prefix{}, 1, 65535}}},
		{"reject *:25", []ExitRule{{false, netip.Prefix{}, 25, 25}}},
		{"accept *4:53", []ExitRule{{true, pfx("0.0.0.0/0"), 53, 53}}},
		{"accept *6:53", []ExitRule{{true, pfx("::/0"), 53, 53}}},
		{"accept6 *:53", []ExitRule{{true, pfx("::/0"), 53, 53}}},
		{"reject6 [2001:db8::]/32", []ExitRule{{false, pfx("2001:db8::/32"), 1, 65535}}},
		{"reject [2001:db8::1]:22", []ExitRule{{false, pfx("2001:db8::1/128"), 22, 22}}},
		{"accept 198.51.100.7", []ExitRule{{true, pfx("198.51.100.7/32"), 1, 65535}}},
		{"accept 1.2.3.4/24:*", []ExitRule{{true, pfx("1.2.3.0/24"), 1, 65535}}}, // host bits cleared
		{"ACCEPT 1.2.3.4:1-65535", []ExitRule{{true, pfx("1.2.3.4/32"), 1, 65535}}},
		{"accept 1.2.3.4:443 # https\nreject *:*", []ExitRule{
			{true, pfx("1.2.3.4/32"), 443, 443}, {false, netip.Prefix{}, 1, 65535}}},
		{"reject *:25, accept *:*", []ExitRule{
			{false, netip.Prefix{}, 25, 25}, {true, netip.Prefix{}, 1, 65535}}},
		{"  accept\t10.0.0.0/8:8080  \r", []ExitRule{{true, pfx("10.0.0.0/8"), 8080, 8080}}},
	} {
		p, err := ParseExitPolicy(tc.in)
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(p.Rules, tc.want) {
			t.Errorf("%q: got %+v, want %+v", tc.in, p.Rules, tc.want)
		}
	}
}

func TestParseExitPolicyRejectsBadRules(t *testing.T) {
	for _, in := range []string{
		"allow *:*",                 // unknown keyword
		"accept",                    // no pattern
		"accept *:* extra",          // trailing junk
		"accept 1.2.3.4:0",          // port 0
		"accept 1.2.3.4:65536",      // port too large
		"accept 1.2.3.4:443-80",     // inverted range
		"accept 1.2.3.4:-80",        // half range
		"accept 1.2.3.4:+80",        // sign
		"accept 1.2.3.4:",           // empty port
		"accept 1.2.3.4/33",         // mask too long
		"accept 1.2.3.4/-1",         // negative mask
		"accept 1.2.3/24",           // short address
		"accept 2001:db8::1:80",     // IPv6 without brackets
		"accept [1.2.3.4]:80",       // IPv4 in brackets
		"accept [2001:db8::1:80",    // missing ]
		"accept [fe80::1%eth0]:80",  // zone
		"accept [2001:db8::]/129",   // mask too long
		"accept6 1.2.3.4:80",        // IPv4 in an IPv6 rule
		"accept6 *4:80",             // ditto
		"accept private:*",          // Tor's keyword, not supported
		"accept 255.255.255.0/0x18", // hex mask
		"accept *:80:90",            // two ports
	} {
		if p, err := ParseExitPolicy(in); err == nil {
			t.Errorf("%q parsed as %+v, want an error", in, p.Rules)
		}
	}
	if _, err := ParseExitPolicy(strings.Repeat("reject *:*\n", maxExitPolicyRules+1)); err == nil {
		t.Errorf("a policy over the rule limit parsed")
	}
}

func TestExitPolicyAllows(t *testing.T) {
	p, err := ParseExitPolicy(`
		reject 198.51.100.0/24:25
		accept 198.51.100.0/24:*
		accept [2001:db8::]/32:443
		reject *:*`)
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddr
	for _, tc := range []struct {
		dst   netip.Addr
		proto uint8
		port  uint16
		want  bool
	}{
		{a("198.51.100.9"), 6, 25, false},
		{a("198.51.100.9"), 17, 25, false},
		{a("198.51.100.9"), 1, 0, true}, // ICMP: the port rule does not apply
		{a("198.51.100.9"), 6, 80, true},
		{a("2001:db8::5"), 6, 443, true},
		{a("2001:db8::5"), 6, 80, false},
		{a("2001:db8::5"), 58, 0, false}, // ICMPv6 has no port
		{a("203.0.113.1"), 6, 443, false},
	} {
		if got := p.Allows(tc.dst, tc.proto, tc.port); got != tc.want {
			t.Errorf("Allows(%s, %d, %d) = %v, want %v", tc.dst, tc.proto, tc.port, got, tc.want)
		}
	}
	if !(&ExitPolicy{}).Allows(a("203.0.113.1"), 6, 25) {
		t.Errorf("an empty policy rejects")
	}
}

func FuzzParseExitPolicy(f *testing.F) {
	for _, seed := range []string{
		"accept 1.2.3.0/24:80-443\nreject *:*",
		"reject [2001:db8::]/32:*, accept6 *:53",
		"accept *4:1-1024 # comment",
		"reject 0.0.0.0/0:65535",
		"accept [::ffff:1.2.3.4]/120:8-9",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, text string) {
		p, err := ParseExitPolicy(text)
		if err != nil {
			return
		}
		// What String prints must parse back to the same policy.
		again, err := ParseExitPolicy(p.String())
		if err != nil {
			t.Fatalf("reparse of %q: %v", p.String(), err)
		}
		if !reflect.DeepEqual(p.Rules, again.Rules) {
			t.Fatalf("round trip changed %+v into %+v", p.Rules, again.Rules)
		}
		for _, r := range p.Rules {
			if r.FirstPort == 0 || r.FirstPort > r.LastPort {
				t.Fatalf("bad port range in %+v", r)
			}
			if r.Network.IsValid() && r.Network != r.Network.Masked() {
				t.Fatalf("unmasked network in %+v", r)
			}
		}
		p.Allows(netip.MustParseAddr("198.51.100.1"), 6, 80)
		checkPolicyCompiles(t, p)
	})
}

// Issue 10: the exit's private list missed NAT64, 6to4, Teredo,
// IPv4-mapped, 192.0.0.0/24, 198.18.0.0/15 and fec0::/10.
func TestIsPrivateDestination(t *testing.T) {
	for _, tc := range []struct {
		addr string
		want bool
	}{
		{"10.1.2.3", true},
		{"192.0.0.8", true},      // IETF protocol assignments
		{"198.18.0.1", true},     // benchmarking
		{"198.19.255.254", true}, // benchmarking, end
		{"198.20.0.1", false},
		{"192.88.99.1", true},     // 6to4 relay anycast
		{"255.255.255.255", true}, // limited broadcast
		{"100.64.0.1", true},
		{"192.0.2.1", false}, // documentation: test networks' internet
		{"8.8.8.8", false},
		{"::", true},
		{"::1", true},
		{"::10.0.0.1", true},               // IPv4-compatible
		{"::ffff:8.8.8.8", true},           // IPv4-mapped, even of a public address
		{"64:ff9b::10.0.0.1", true},        // NAT64 of a private address
		{"64:ff9b::127.0.0.1", true},       // NAT64 of loopback
		{"64:ff9b::169.254.169.254", true}, // NAT64 of the cloud metadata service
		{"64:ff9b::8.8.8.8", false},        // NAT64 of a public address
		{"64:ff9b:1::8.8.8.8", true},       // local-use NAT64: all of it
		{"2002:0a00:0001::1", true},        // 6to4 of 10.0.0.1
		{"2002:a9fe:a9fe::1", true},        // 6to4 of 169.254.169.254
		{"2002:0808:0808::1", false},       // 6to4 of 8.8.8.8
		{"2001:0:5ef5:79fb::1", true},      // Teredo
		{"2001:2::1", true},                // benchmarking
		{"2001:10::1", true},               // ORCHID
		{"2001:4:112::1", false},           // AS112: reachable
		{"2001:1::1", false},               // PCP anycast: reachable
		{"100::1", true},                   // discard-only
		{"5f00::1", true},                  // SRv6
		{"fc00::2", true},
		{"fd12::1", true},
		{"fe80::1", true},
		{"fec0::1", true}, // site-local
		{"ff02::1", true},
		{"2001:db8::1", false}, // documentation
		{"2606:4700::1111", false},
	} {
		if got := IsPrivateDestination(netip.MustParseAddr(tc.addr), nil); got != tc.want {
			t.Errorf("IsPrivateDestination(%s) = %v, want %v", tc.addr, got, tc.want)
		}
	}
	allow := []netip.Prefix{pfx("172.16.5.0/24")}
	if IsPrivateDestination(netip.MustParseAddr("172.16.5.5"), allow) || !IsPrivateDestination(netip.MustParseAddr("172.16.6.5"), allow) {
		t.Error("AllowPrivate not honoured exactly")
	}
	// Every derived prefix is canonical: nftables matches on the masked
	// address.
	for _, p := range PrivateDestinations {
		if p != p.Masked() {
			t.Errorf("%v is not masked", p)
		}
	}
}
