package main

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/nym-go/nym/platform"
	"github.com/nym-go/nym/tun"
)

const tunName = "nymvpn0"

// linuxHost sets up the host through package platform, which records every
// change in statePath first so that a crashed daemon's changes are undone at
// the next start.
type linuxHost struct {
	statePath string
	ks        *platform.KillSwitch
	routes    *platform.Routes
	dns       *platform.DNS
}

func newHost(statePath string) (host, error) {
	// Undo what a crashed run left behind.
	if err := platform.Restore(statePath); err != nil {
		return nil, fmt.Errorf("restoring the state of an earlier run: %w", err)
	}
	return &linuxHost{statePath: statePath}, nil
}

func endpoints(outside []netip.AddrPort) []platform.Endpoint {
	eps := make([]platform.Endpoint, len(outside))
	for i, ap := range outside {
		eps[i] = platform.Endpoint{Addr: ap, Protocol: platform.AnyProtocol}
	}
	return eps
}

func (h *linuxHost) KillSwitch(outside []netip.AddrPort) error {
	rules := platform.KillSwitchRules{Allowed: endpoints(outside)}
	if h.ks != nil {
		return h.ks.Update(rules)
	}
	ks, err := platform.EnableKillSwitch(h.statePath, rules)
	if err != nil {
		return fmt.Errorf("kill switch: %w", err)
	}
	h.ks = ks
	return nil
}

func (h *linuxHost) Up(addrs []netip.Prefix, mtu int, outside []netip.AddrPort, dns []netip.Addr) (tun.Device, error) {
	dev, err := tun.CreateKernel(tunName, mtu)
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", tunName, err)
	}
	exc := make([]netip.Addr, len(outside))
	for i, ap := range outside {
		exc[i] = ap.Addr()
	}
	if h.routes, err = platform.ApplyRoutes(platform.RouteConfig{StatePath: h.statePath, TUN: tunName, Addresses: addrs, Exceptions: exc}); err != nil {
		dev.Close()
		return nil, fmt.Errorf("routes: %w", err)
	}
	if h.ks != nil {
		if err := h.ks.Update(platform.KillSwitchRules{TUN: tunName, Allowed: endpoints(outside)}); err != nil {
			dev.Close()
			return nil, fmt.Errorf("kill switch: %w", err)
		}
	}
	if len(dns) > 0 {
		if h.dns, err = platform.ApplyDNS(platform.DNSConfig{StatePath: h.statePath, Servers: dns}); err != nil {
			dev.Close()
			return nil, fmt.Errorf("DNS: %w", err)
		}
	}
	return dev, nil
}

func (h *linuxHost) Down() error {
	var errs []error
	if h.dns != nil {
		errs = append(errs, h.dns.Restore())
		h.dns = nil
	}
	if h.routes != nil {
		errs = append(errs, h.routes.Remove())
		h.routes = nil
	}
	if h.ks != nil {
		errs = append(errs, h.ks.Disable())
		h.ks = nil
	}
	errs = append(errs, platform.Restore(h.statePath))
	return errors.Join(errs...)
}
