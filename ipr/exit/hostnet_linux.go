package exit

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"

	"github.com/nym-go/nym/ipr"
	"github.com/nym-go/nym/platform"
	"github.com/nym-go/nym/tun"
)

// systemHost is the Host of a real exit: the TUN's addresses and the exit's
// forwarding, NAT and policy, in the namespace Up runs in. The networking is
// bound to that namespace, so Close may run on any thread.
type systemHost struct {
	cfg *Config
	net *platform.ExitNetworking
}

func newSystemHost(cfg *Config) Host { return &systemHost{cfg: cfg} }

// Up configures the kernel TUN dev, then installs the exit networking. A
// crashed run's leftovers are restored first.
func (h *systemHost) Up(dev tun.Device) (_ []netip.Addr, err error) {
	kdev, ok := dev.(tun.KernelDevice)
	if !ok {
		return nil, fmt.Errorf("exit: the host's networking needs a kernel TUN, not %T", dev)
	}
	cfg := h.cfg
	if err := platform.Restore(cfg.StatePath); err != nil {
		return nil, fmt.Errorf("exit: restoring an earlier run's networking: %w", err)
	}
	if err := configureTUN(kdev, cfg); err != nil {
		return nil, err
	}
	uplink := cfg.Uplink
	if uplink == "" {
		if uplink, err = DefaultUplink(); err != nil {
			return nil, fmt.Errorf("exit: no uplink given and %w", err)
		}
	}
	en, err := platform.StartExitNetworking(platform.ExitConfig{
		StatePath:      cfg.StatePath,
		TUN:            kdev.Name(),
		ExtraTUNs:      cfg.ExtraTUNs,
		Uplink:         uplink,
		ClientPrefixes: append([]netip.Prefix{ipr.ClientNetV4, ipr.ClientNetV6}, cfg.ExtraClientPrefixes...),
		AllowPrivate:   cfg.AllowPrivate,
		Policy:         cfg.Policy,
	})
	if err != nil {
		return nil, fmt.Errorf("exit: starting exit networking: %w", err)
	}
	own, err := hostAddrs()
	if err != nil {
		return nil, errors.Join(fmt.Errorf("exit: the host's addresses: %w", err), en.Close())
	}
	h.net = en
	return own, nil
}

// configureTUN puts the router's addresses on the TUN and brings it up.
// IPv6 is optional: a host with IPv6 turned off still serves IPv4.
func configureTUN(dev tun.KernelDevice, cfg *Config) error {
	link, err := netlink.LinkByIndex(dev.Index())
	if err != nil {
		return fmt.Errorf("exit: TUN %s: %w", dev.Name(), err)
	}
	v4 := netip.PrefixFrom(ipr.RouterIPv4, ipr.ClientNetV4.Bits())
	if err := netlink.AddrAdd(link, nlAddr(v4)); err != nil {
		return fmt.Errorf("exit: adding %s to %s: %w", v4, dev.Name(), err)
	}
	v6 := netip.PrefixFrom(ipr.RouterIPv6, ipr.ClientNetV6.Bits())
	if err := netlink.AddrAdd(link, &netlink.Addr{IPNet: ipNet(v6), Flags: nodad}); err != nil {
		cfg.Logger.Warn("exit TUN without IPv6", "tun", dev.Name(), "addr", v6, "err", err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("exit: bringing %s up: %w", dev.Name(), err)
	}
	return nil
}

// nodad: the TUN has no neighbours to detect duplicates with; without it the
// address stays tentative for a second and early replies are lost.
const nodad = 0x02 // IFA_F_NODAD

func nlAddr(p netip.Prefix) *netlink.Addr { return &netlink.Addr{IPNet: ipNet(p)} }

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// Close removes the exit networking.
func (h *systemHost) Close() error {
	if h.net == nil {
		return nil
	}
	return h.net.Close()
}

// DefaultUplink is the interface of the calling namespace's IPv4 default
// route: where the exit's traffic leaves by default.
func DefaultUplink() (string, error) {
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4) // the main table
	if err != nil {
		return "", fmt.Errorf("exit: listing routes: %w", err)
	}
	for _, r := range routes {
		if (r.Dst == nil || r.Dst.IP.IsUnspecified() && isZeroMask(r.Dst.Mask)) && r.LinkIndex > 0 {
			l, err := netlink.LinkByIndex(r.LinkIndex)
			if err != nil {
				return "", fmt.Errorf("exit: default route's interface: %w", err)
			}
			return l.Attrs().Name, nil
		}
	}
	return "", errors.New("exit: no IPv4 default route")
}

func isZeroMask(m net.IPMask) bool {
	ones, _ := m.Size()
	return ones == 0
}

// FlushConntrack deletes the conntrack entries of client addresses.
func (h *systemHost) FlushConntrack(addrs ...netip.Addr) (int, error) {
	if h.net == nil {
		return 0, nil
	}
	return h.net.FlushConntrack(addrs...)
}

// hostAddrs lists the addresses of every interface in the calling thread's
// network namespace: the exit host, as its clients must not see it.
func hostAddrs() ([]netip.Addr, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	var own []netip.Addr
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			own = append(own, p.Addr().Unmap())
		}
	}
	return own, nil
}
