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

// hostNet is what the service changes on the host: the TUN and the exit's
// forwarding, NAT and policy. Both are bound to the namespace they were made
// in, so close may run on any thread.
type hostNet struct {
	dev tun.KernelDevice
	net *platform.ExitNetworking
}

// openHostNet creates and configures the exit TUN, then installs the exit
// networking, all in the calling thread's network namespace. A crashed run's
// leftovers are restored first. On error nothing stays behind.
func openHostNet(cfg *Config, mtu int) (_ *hostNet, err error) {
	if err := platform.Restore(cfg.StatePath); err != nil {
		return nil, fmt.Errorf("exit: restoring an earlier run's networking: %w", err)
	}
	dev, err := tun.CreateKernel(cfg.TUNName, mtu)
	if err != nil {
		return nil, fmt.Errorf("exit: creating TUN %s: %w", cfg.TUNName, err)
	}
	defer func() {
		if err != nil {
			dev.Close()
		}
	}()
	if err := configureTUN(dev, cfg); err != nil {
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
		TUN:            dev.Name(),
		Uplink:         uplink,
		ClientPrefixes: []netip.Prefix{ipr.ClientNetV4, ipr.ClientNetV6},
		AllowPrivate:   cfg.AllowPrivate,
		Policy:         cfg.Policy,
	})
	if err != nil {
		return nil, fmt.Errorf("exit: starting exit networking: %w", err)
	}
	return &hostNet{dev: dev, net: en}, nil
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

// close removes the exit networking and the TUN. The table goes first, so
// nothing is forwarded unfiltered while the TUN disappears.
func (h *hostNet) close() error {
	return errors.Join(h.net.Stop(), h.dev.Close())
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

// flushConntrack deletes the conntrack entries of client addresses.
func (h *hostNet) flushConntrack(addrs ...netip.Addr) (int, error) {
	return h.net.FlushConntrack(addrs...)
}
