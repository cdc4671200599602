package main

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"github.com/nym-go/nym/platform"
	"github.com/nym-go/nym/tun"
)

const tunName = "nymvpn0"

// linuxHost sets up the host through package platform, which records every
// change in statePath first so that a crashed daemon's changes are undone at
// the next start (all but the kill switch, which the next start keeps).
type linuxHost struct {
	statePath string

	mu       sync.Mutex
	ks       *platform.KillSwitch
	tun      string                    // the TUN the kill switch lets through; "" before Up
	dir      netip.AddrPort            // the directory, let out marked
	gateways map[platform.Endpoint]int // gateways let out marked, by open connections
	routes   *platform.Routes
	dns      *platform.DNS
	allowLAN bool                // SetAllowLAN
	lan      []platform.LocalNet // the uplink's local networks, while allowLAN
	split    *platform.Split     // the exclusion group (exclude_linux.go), while routed
}

func newHost(statePath string) (host, error) {
	// Undo what a crashed run left behind, but its kill switch: a daemon
	// that crashed while connected must not leak while it restarts and
	// reconnects. The kill switch stays until an explicit disconnect.
	if err := platform.RestoreKeepingKillSwitch(statePath); err != nil {
		return nil, fmt.Errorf("restoring the state of an earlier run: %w", err)
	}
	h := &linuxHost{statePath: statePath, gateways: make(map[platform.Endpoint]int)}
	kept, err := platform.KillSwitchRecorded(statePath)
	if err != nil {
		return nil, err
	}
	if kept {
		// Take it over, replacing its rules in one transaction (no gap)
		// with rules that let nothing out until a connect says what.
		if h.ks, err = platform.EnableKillSwitch(statePath, h.rulesLocked()); err != nil {
			return nil, fmt.Errorf("keeping the kill switch of an earlier run: %w", err)
		}
	}
	return h, nil
}

// rulesLocked is what the kill switch lets through now.
func (h *linuxHost) rulesLocked() platform.KillSwitchRules {
	r := platform.KillSwitchRules{TUN: h.tun, Mark: fwMark, LAN: h.lan}
	r.Exclude = h.split.Exclude()
	if h.dir.IsValid() {
		r.Allowed = append(r.Allowed, platform.Endpoint{Addr: h.dir, Protocol: platform.TCP})
	}
	for gw := range h.gateways {
		r.Allowed = append(r.Allowed, gw)
	}
	return r
}

func (h *linuxHost) updateLocked() error {
	if h.ks == nil {
		return nil
	}
	lerr := h.findLANLocked()
	return errors.Join(h.ks.Update(h.rulesLocked()), lerr)
}

// findLANLocked looks up the uplink's local networks if allow-LAN is on.
// A failed look-up lets no local network through: closed, not open.
func (h *linuxHost) findLANLocked() error {
	h.lan = nil
	if !h.allowLAN {
		return nil
	}
	lan, err := platform.UplinkLAN()
	if err != nil {
		return fmt.Errorf("allow-LAN: %w", err)
	}
	h.lan = lan
	return nil
}

func (h *linuxHost) SetAllowLAN(on bool) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.allowLAN = on
	return h.updateLocked()
}

func (h *linuxHost) KillSwitch(dir netip.AddrPort) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.dir = dir
	if h.ks != nil {
		return h.updateLocked()
	}
	// Up first, with no local network if they cannot be found.
	lerr := h.findLANLocked()
	ks, err := platform.EnableKillSwitch(h.statePath, h.rulesLocked())
	if err != nil {
		return fmt.Errorf("kill switch: %w", err)
	}
	h.ks = ks
	return lerr
}

func (h *linuxHost) KillSwitchOn() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ks != nil
}

func (h *linuxHost) Open(gw netip.AddrPort) (func(), error) {
	return h.open(platform.Endpoint{Addr: gw, Protocol: platform.TCP})
}

func (h *linuxHost) OpenUDP(gw netip.AddrPort) (func(), error) {
	return h.open(platform.Endpoint{Addr: gw, Protocol: platform.UDP})
}

func (h *linuxHost) open(gw platform.Endpoint) (func(), error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ks == nil {
		return func() {}, nil
	}
	h.gateways[gw]++
	if h.gateways[gw] == 1 {
		if err := h.updateLocked(); err != nil {
			delete(h.gateways, gw)
			return nil, err
		}
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			h.mu.Lock()
			defer h.mu.Unlock()
			if h.gateways[gw]--; h.gateways[gw] > 0 {
				return
			}
			delete(h.gateways, gw)
			// A failure leaves the hole until the next update: marked
			// TCP to one gateway, nothing anyone else can use.
			h.updateLocked()
		})
	}, nil
}

func (h *linuxHost) Up(addrs []netip.Prefix, mtu int, dns []netip.Addr) (tun.Device, error) {
	dev, err := tun.CreateKernel(tunName, mtu)
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", tunName, err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.routes, err = platform.ApplyRoutes(platform.RouteConfig{StatePath: h.statePath, TUN: tunName, Addresses: addrs, Mark: fwMark}); err != nil {
		dev.Close()
		return nil, fmt.Errorf("routes: %w", err)
	}
	h.tun = tunName
	h.splitLocked()
	if err := h.updateLocked(); err != nil {
		dev.Close()
		return nil, fmt.Errorf("kill switch: %w", err)
	}
	if len(dns) > 0 {
		if h.dns, err = platform.ApplyDNS(platform.DNSConfig{StatePath: h.statePath, Servers: dns}); err != nil {
			dev.Close()
			return nil, fmt.Errorf("DNS: %w", err)
		}
	}
	return dev, nil
}

func (h *linuxHost) Unroute() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	var errs []error
	if h.dns != nil {
		errs = append(errs, h.dns.Restore())
		h.dns = nil
	}
	if h.routes != nil {
		errs = append(errs, h.routes.Remove())
		h.routes = nil
	}
	h.tun = ""
	errs = append(errs, h.updateLocked())
	errs = append(errs, h.unsplitLocked())
	return errors.Join(errs...)
}

func (h *linuxHost) Down() error {
	errs := []error{h.Unroute()}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ks != nil {
		errs = append(errs, h.ks.Disable())
		h.ks = nil
	}
	h.dir = netip.AddrPort{}
	clear(h.gateways)
	errs = append(errs, platform.Restore(h.statePath))
	return errors.Join(errs...)
}
