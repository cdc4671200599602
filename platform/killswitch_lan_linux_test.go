package platform

import (
	"net/netip"
	"slices"
	"testing"
)

// UplinkLAN finds the local networks of the links holding a default route,
// and no others: not a public or over-wide prefix of the uplink, not the
// private networks of another link.
func TestUplinkLANIsTheUplinksLocalNetworksOnly(t *testing.T) {
	requireNetAdmin(t)
	ns := newNS(t, "lan")
	sh(t, "ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv6.conf.default.accept_dad=0")
	for _, l := range []string{"up0", "d1"} {
		ipNS(t, ns, "link", "add", l, "type", "veth", "peer", "name", l+"p")
		for _, end := range []string{l, l + "p"} {
			ipNS(t, ns, "link", "set", end, "addrgenmode", "none")
			ipNS(t, ns, "link", "set", end, "up")
		}
	}
	for _, a := range [][2]string{
		{"up0", "192.168.5.2/24"}, {"up0", "10.1.2.3/4"}, {"up0", "198.51.100.2/24"},
		{"up0", "fd05::2/64"}, {"up0", "2001:db8:5::2/64"}, {"up0", "fe80::5/64"},
		{"d1", "172.16.9.1/24"}, {"d1", "fd09::1/64"}, {"d1", "fe80::9/64"},
	} {
		ipNS(t, ns, "addr", "add", a[1], "dev", a[0], "nodad")
	}
	uplinkLAN := func() []LocalNet {
		t.Helper()
		var lan []LocalNet
		mustInNS(t, ns, func() error {
			var err error
			lan, err = UplinkLAN()
			return err
		})
		return lan
	}
	want := func(spec ...string) []LocalNet {
		var out []LocalNet
		for i := 0; i < len(spec); i += 2 {
			out = append(out, LocalNet{Link: spec[i], Prefix: netip.MustParsePrefix(spec[i+1])})
		}
		return out
	}

	if lan := uplinkLAN(); len(lan) != 0 {
		t.Errorf("no default route, yet local networks %v", lan)
	}
	ipNS(t, ns, "route", "add", "default", "via", "192.168.5.1", "dev", "up0")
	if got, w := uplinkLAN(), want("up0", "10.0.0.0/8", "up0", "192.168.5.0/24", "up0", "fd05::/64", "up0", "fe80::/64"); !slices.Equal(got, w) {
		t.Errorf("IPv4 default by up0: local networks\n%v, want\n%v", got, w)
	}
	ipNS(t, ns, "-6", "route", "add", "default", "dev", "d1")
	if got, w := uplinkLAN(), want("d1", "172.16.9.0/24", "d1", "fd09::/64", "d1", "fe80::/64",
		"up0", "10.0.0.0/8", "up0", "192.168.5.0/24", "up0", "fd05::/64", "up0", "fe80::/64"); !slices.Equal(got, w) {
		t.Errorf("and IPv6 default by d1: local networks\n%v, want\n%v", got, w)
	}
}
