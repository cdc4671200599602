package wggate

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"

	"github.com/vishvananda/netlink"
	wgtun "golang.zx2c4.com/wireguard/tun"
)

// createExitTUN makes the exit's kernel TUN with the gateway's addresses
// and brings it up. The node hands its name to the exit networking.
func createExitTUN(name string, mtu int, v4, v6 netip.Prefix, log *slog.Logger) (wgtun.Device, error) {
	dev, err := wgtun.CreateTUN(name, mtu)
	if err != nil {
		return nil, fmt.Errorf("wggate: creating TUN %s: %w", name, err)
	}
	fail := func(err error) (wgtun.Device, error) {
		dev.Close()
		return nil, err
	}
	l, err := netlink.LinkByName(name)
	if err != nil {
		return fail(fmt.Errorf("wggate: TUN %s: %w", name, err))
	}
	if err := netlink.AddrAdd(l, &netlink.Addr{IPNet: ipNet(v4)}); err != nil {
		return fail(fmt.Errorf("wggate: adding %s to %s: %w", v4, name, err))
	}
	if v6.IsValid() {
		// nodad: no neighbours to detect duplicates with; without it the
		// address stays tentative for a second.
		if err := netlink.AddrAdd(l, &netlink.Addr{IPNet: ipNet(v6), Flags: 0x02}); err != nil {
			log.Warn("exit WireGuard TUN without IPv6", "tun", name, "err", err)
		}
	}
	// Closed until the exit networking (NAT, policy) takes the TUN and
	// turns it on: a host that forwards by default must not forward
	// clients' packets bare.
	if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+name+"/forwarding", []byte("0"), 0); err != nil {
		return fail(fmt.Errorf("wggate: turning forwarding off on %s: %w", name, err))
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fail(fmt.Errorf("wggate: bringing %s up: %w", name, err))
	}
	return withoutUpDown(dev), nil
}

// upDownFiltered passes on a TUN's MTU events only. The gateway brings its
// device up itself, on the thread (and so in the network namespace) that
// owns it; on a link event wireguard-go's own goroutine would open the
// UDP sockets, perhaps first, and perhaps in another namespace.
type upDownFiltered struct {
	wgtun.Device
	events chan wgtun.Event
}

func withoutUpDown(dev wgtun.Device) wgtun.Device {
	f := &upDownFiltered{Device: dev, events: make(chan wgtun.Event, 4)}
	go func() { // ends when the TUN closes its events
		defer close(f.events)
		for ev := range dev.Events() {
			if ev&wgtun.EventMTUUpdate != 0 {
				select {
				case f.events <- wgtun.EventMTUUpdate:
				default: // one pending is as good as many
				}
			}
		}
	}()
	return f
}

func (f *upDownFiltered) Events() <-chan wgtun.Event { return f.events }

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
