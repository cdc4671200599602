package main

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/nym-go/nym/netmon"
	"github.com/nym-go/nym/platform"
)

// Allow-LAN on Linux: the kill switch lets the uplink's local networks
// through (platform.UplinkLAN finds them, KillSwitchRules.LAN lets them
// pass). Routing needs nothing: the tunnel's rules leave the main table's
// routes to connected networks in force (suppress_prefixlength 0).

func (h *linuxHost) SetAllowLAN(on bool) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.allowLAN = on
	return errors.Join(h.updateLocked(), h.followUplinkLocked())
}

// findLANLocked looks up the uplink's local networks if allow-LAN is on.
// A failed look-up lets no local network through: closed, not open.
func (h *linuxHost) findLANLocked() error {
	h.lan = nil
	if !h.allowLAN {
		return nil
	}
	lan, err := platform.UplinkLAN(h.ns)
	if err != nil {
		return fmt.Errorf("allow-LAN: %w", err)
	}
	h.lan = lan
	return nil
}

// followUplinkLocked keeps an uplink monitor while allow-LAN is on and the
// kill switch is in force, and stops it otherwise. On each change of the
// uplink (another Wi-Fi network, a cable plugged in after a boot in
// lockdown, the uplink gone) the kill switch is updated with the local
// networks of the uplink as it is now: the old LAN closes, the new one
// opens, without waiting for a reconnect.
func (h *linuxHost) followUplinkLocked() error {
	want := h.allowLAN && h.ks != nil
	if want == (h.uplinkMon != nil) {
		return nil
	}
	if !want {
		m := h.uplinkMon
		h.uplinkMon = nil
		// The reader below may be waiting for h.mu: it finds the
		// monitor replaced and ends when Close closes Changes.
		return m.Close()
	}
	m, err := netmon.New(netmon.Config{Ignore: []string{tunName}, Namespace: &h.ns})
	if err != nil {
		return fmt.Errorf("allow-LAN: following the uplink: %w", err)
	}
	h.uplinkMon = m
	go func() {
		for range m.Changes() {
			h.mu.Lock()
			if h.uplinkMon == m {
				if err := h.updateLocked(); err != nil {
					slog.Warn("allow-LAN: updating the kill switch after the uplink changed", "err", err)
				}
			}
			h.mu.Unlock()
		}
	}()
	return nil
}
