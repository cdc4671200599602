package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/spf13/cobra"

	"github.com/nym-go/nym/platform"
)

// Lockdown is the kill switch without a tunnel: with `nymvpn set lockdown
// on` the daemon turns it on at start (letting nothing out but loopback and
// the local link's DHCP and neighbour discovery), keeps it through
// disconnect and its own stop, and a connect opens it only to the
// directory, the gateway in use and the TUN, as any connect with the kill
// switch does. The kernel keeps the table when the daemon dies (kill -9),
// and the next daemon takes it over in one transaction (newHost). A reboot
// empties the kernel's tables: the boot unit runs `nymvpn lockdown apply`
// before the network comes up, which puts the same table back from the
// settings.

// lockdownLocked tears down what a tunnel set up but the kill switch, which
// goes back to letting nothing out.
func (d *daemon) lockdownLocked() error {
	return errors.Join(d.host.Unroute(), d.host.KillSwitch(netip.AddrPort{}))
}

// set changes one setting, saves the settings and applies the change.
func (d *daemon) set(key, value string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	s, err := d.settings.set(key, value)
	if err != nil {
		return err
	}
	if err := s.save(settingsPath(d.statePath)); err != nil {
		return err
	}
	old := d.settings
	d.settings = s
	connected := d.tunnel != nil || d.fast != nil
	switch {
	case s.Lockdown && !old.Lockdown && !d.host.KillSwitchOn():
		// A tunnel connected without the kill switch has no hole for
		// its gateway: it loses its path and reconnects through the
		// kill switch, which then lets the new gateway out.
		var dir netip.AddrPort
		switch {
		case d.plan != nil:
			dir = d.plan.out.dir
		case d.fast != nil:
			dir = d.fast.out.dir
		}
		if err := d.host.KillSwitch(dir); err != nil {
			return fmt.Errorf("lockdown: %w", err)
		}
	case !s.Lockdown && old.Lockdown && !connected:
		if err := d.host.Down(); err != nil {
			return fmt.Errorf("lockdown off: %w", err)
		}
	}
	if old.AutoConnect && !s.AutoConnect {
		d.stopAutoConnect()
	}
	if s.AllowLAN != old.AllowLAN {
		// At once: the kill switch in force (lockdown's, or a
		// tunnel's) lets the local networks through, or stops.
		if err := d.host.SetAllowLAN(s.AllowLAN); err != nil {
			return fmt.Errorf("allow-lan: %w", err)
		}
	}
	d.log.Info("setting changed", "key", key, "value", value)
	return nil
}

// currentSettings is a copy of the settings in force.
func (d *daemon) currentSettings() *settings {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.settings
	if s.Connect != nil {
		c := *s.Connect
		s.Connect = &c
	}
	return &s
}

// rememberLocked saves req as the last connect request, for auto-connect
// and for connects that leave out network, mode, profile or DNS. Failing
// to save is worth a warning, not a failed connect.
func (d *daemon) rememberLocked(req connectRequest) {
	s := d.settings
	s.Connect = saveConnect(req)
	if err := s.save(settingsPath(d.statePath)); err != nil {
		d.log.Warn("remembering the connect request", "err", err)
		return
	}
	d.settings = s
}

// autoConnect connects at start with the remembered request, and tries
// again while that fails (at boot the network may not be up yet), waiting
// autoConnectRetry, doubling to a minute. It stops once connected, and
// when ctx ends: the daemon stops, or the user connects, disconnects or
// turns auto-connect off (stopAutoConnect).
func (d *daemon) autoConnect(ctx context.Context) {
	d.mu.Lock()
	saved := *d.settings.Connect
	d.mu.Unlock()
	req, err := saved.request()
	if err != nil {
		d.log.Error("auto-connect: the remembered request", "err", err)
		return
	}
	for wait := autoConnectRetry; ; wait = min(2*wait, time.Minute) {
		d.log.Info("auto-connect", "mode", req.Mode)
		err := d.connect(ctx, req)
		if err == nil || ctx.Err() != nil {
			return
		}
		d.log.Error("auto-connect failed", "err", err, "retry_in", wait)
		d.mu.Lock()
		d.lastErr = err.Error()
		d.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// autoConnectRetry is the first wait between auto-connect's attempts.
const autoConnectRetry = 2 * time.Second

// stopAutoConnect ends auto-connect's attempts (and one in progress): the
// user has said what they want.
func (d *daemon) stopAutoConnect() {
	d.autoMu.Lock()
	defer d.autoMu.Unlock()
	if d.autoStop != nil {
		d.autoStop()
	}
}

func newLockdown(o *options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lockdown",
		Short: "Lockdown at boot (see `nymvpn set lockdown on`)",
	}
	var statePath string
	apply := &cobra.Command{
		Use:   "apply",
		Short: "Put the lockdown's kill switch in place when the settings ask for it (the boot unit, before the network)",
		Long: "Installs the kill switch, letting nothing out, when lockdown is on or the state file records a kill\n" +
			"switch of a run that did not end with a disconnect; does nothing otherwise. The daemon takes the\n" +
			"table over at start without a gap.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if statePath == "" {
				statePath = defaultStatePath(o.socket)
			}
			on, err := applyBootLockdown(statePath)
			if err != nil {
				return err
			}
			if on {
				fmt.Fprintln(cmd.OutOrStdout(), "lockdown: kill switch in place")
			} else {
				fmt.Fprintln(cmd.OutOrStdout(), "lockdown: off")
			}
			return nil
		},
	}
	apply.Flags().StringVar(&statePath, "state", "", "the daemon's state file (default: the one of --socket's daemon)")
	cmd.AddCommand(apply)
	return cmd
}

// applyBootLockdown installs the kill switch with nothing allowed when the
// settings beside statePath have lockdown on, or the state file records a
// kill switch (a run that crashed before the reboot meant to keep it). It
// reports whether it did.
func applyBootLockdown(statePath string) (bool, error) {
	s, serr := loadSettings(settingsPath(statePath))
	if serr != nil {
		s.Lockdown = true // unreadable settings may have said lockdown: fail closed
	}
	kept, err := platform.KillSwitchRecorded(statePath)
	if err != nil {
		return false, errors.Join(serr, err)
	}
	if !s.Lockdown && !kept {
		return false, nil
	}
	ks, err := platform.EnableKillSwitch(statePath, platform.KillSwitchRules{Mark: fwMark})
	if err != nil {
		return false, errors.Join(serr, fmt.Errorf("lockdown: %w", err))
	}
	ks.Close() // the rules stay: the daemon takes them over
	if serr != nil {
		return true, fmt.Errorf("kill switch in place, but: %w", serr)
	}
	return true, nil
}
