package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"time"

	"github.com/spf13/cobra"
)

// call sends one request to the daemon and returns its answer.
func call(socket string, req request) (*response, error) {
	conn, err := net.DialTimeout("unix", socket, 2*time.Second)
	if err != nil {
		return nil, fmt.Errorf("no daemon at %s: %w", socket, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(3 * time.Minute))
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return nil, fmt.Errorf("talking to the daemon: %w", err)
	}
	var resp response
	if err := json.NewDecoder(conn).Decode(&resp); err != nil {
		return nil, fmt.Errorf("reading the daemon's answer: %w", err)
	}
	if resp.Error != "" {
		return &resp, errors.New(resp.Error)
	}
	return &resp, nil
}

func newConnect(o *options) *cobra.Command {
	var req connectRequest
	var foreground bool
	cmd := &cobra.Command{
		Use:   "connect [--network FILE | --directory URL --directory-key KEY]",
		Short: "Bring the tunnel up; returns once it carries traffic",
		Long: "Brings the tunnel up. What the flags leave out (the network, --mode, --profile, --dns) comes\n" +
			"from the daemon's settings: the last connect, changed by `nymvpn set` since.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if foreground {
				return fmt.Errorf("--foreground: run `nymvpn daemon` in one terminal and `nymvpn connect` in another")
			}
			if _, err := call(o.socket, request{Op: "status"}); err != nil {
				if err := startDaemon(o); err != nil {
					return err
				}
			}
			if resp, err := call(o.socket, request{Op: "settings"}); err == nil && resp.Settings != nil {
				resp.Settings.Connect.fill(&req, cmd.Flags().Changed)
			}
			if err := req.check(); err != nil {
				return err
			}
			resp, err := call(o.socket, request{Op: "connect", Connect: &req})
			if err != nil {
				return err
			}
			printStatus(cmd, resp.Status)
			return nil
		},
	}
	req.flags(cmd.Flags())
	cmd.Flags().BoolVar(&foreground, "foreground", false, "do not start a detached daemon")
	return cmd
}

// startDaemon re-executes this binary as a detached daemon and waits for
// its socket.
func startDaemon(o *options) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("starting the daemon: %w", err)
	}
	c := exec.Command(self, "daemon", "--socket", o.socket, "--log-level", o.logLevel)
	c.SysProcAttr = detached()
	if err := c.Start(); err != nil {
		return fmt.Errorf("starting the daemon: %w", err)
	}
	c.Process.Release()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if _, err := call(o.socket, request{Op: "status"}); err == nil {
			return nil
		}
	}
	return fmt.Errorf("the daemon did not come up at %s", o.socket)
}

func newStatus(o *options) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the tunnel's state, exit, addresses and traffic",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := call(o.socket, request{Op: "status"})
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(resp.Status)
			}
			printStatus(cmd, resp.Status)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newDisconnect(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "disconnect",
		Short: "Tear the tunnel down and restore routes, DNS and firewall",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := call(o.socket, request{Op: "disconnect"})
			if err != nil {
				return err
			}
			printStatus(cmd, resp.Status)
			return nil
		},
	}
}

func printStatus(cmd *cobra.Command, s *status) {
	w := cmd.OutOrStdout()
	if s == nil {
		return
	}
	fmt.Fprintf(w, "state:     %s\n", s.State)
	switch {
	case s.Mode == modeFast:
		fmt.Fprintf(w, "mode:      fast (WireGuard through an entry and an exit, no mixing: the entry sees who, the exit sees where)\n")
		if s.Entry != "" {
			fmt.Fprintf(w, "entry:     %s\n", s.Entry)
		}
	case s.Mode != "":
		fmt.Fprintf(w, "mode:      %s (through the mixnet)\n", s.Mode)
	}
	if s.Stats != nil && s.Mode == modeFast {
		st := s.Stats
		fmt.Fprintf(w, "exit:      %s\naddresses: %v (MTU %d)\nuptime:    %v\n", s.Exit, s.Addrs, s.MTU, st.Uptime.Round(time.Second))
		fmt.Fprintf(w, "sent:      %d bytes\nreceived:  %d bytes\nhandshake: %v ago\nreconnects: %d\n", st.BytesUp, st.BytesDown, s.Handshake, st.Reconnects)
		for _, a := range s.Allowances {
			switch {
			case !a.Metered:
				fmt.Fprintf(w, "%-10s unmetered\n", a.Hop+":")
			case a.Error != "":
				fmt.Fprintf(w, "%-10s %d bytes left, TOP-UP FAILED: %s (past them the gateway drops the tunnel; the kill switch holds)\n", a.Hop+":", a.Left, a.Error)
			default:
				fmt.Fprintf(w, "%-10s %d bytes left (%d top-ups)\n", a.Hop+":", a.Left, a.TopUps)
			}
		}
	} else if s.Stats != nil {
		st := s.Stats
		fmt.Fprintf(w, "exit:      %s\naddresses: %v (MTU %d)\nuptime:    %v\n", s.Exit, s.Addrs, s.MTU, st.Uptime.Round(time.Second))
		fmt.Fprintf(w, "profile:   %s (%s)\n", st.Profile, st.IdleCost)
		fmt.Fprintf(w, "sent:      %d bytes, %d packets\nreceived:  %d bytes, %d packets\n", st.BytesUp, st.PacketsUp, st.BytesDown, st.PacketsDown)
		fmt.Fprintf(w, "SURBs:     %d sent, %d used, ~%d at the exit\nreconnects: %d\n", st.SURBsSent, st.SURBsUsed, st.SURBsOutstanding, st.Reconnects)
	}
	if t := s.Tickets; t != nil && t.Known {
		if t.Unmetered {
			fmt.Fprintf(w, "tickets:   the entry gateway requires none\n")
		} else {
			fmt.Fprintf(w, "tickets:   %d bytes left at the entry gateway (%d tickets shown; `nymvpn tickets` lists the rest)\n", t.Left, t.Spent)
		}
	}
	switch {
	case s.Lockdown:
		fmt.Fprintf(w, "kill switch: on, lockdown (only the tunnel gets out, also while disconnected, until `nymvpn set lockdown off`)\n")
	case s.KillSwitch:
		fmt.Fprintf(w, "kill switch: on (only the tunnel gets out until `nymvpn disconnect`)\n")
	}
	if s.AllowLAN {
		fmt.Fprintf(w, "allow LAN: on (the uplink's local subnets bypass the tunnel)\n")
	}
	printExcluded(w, s.Excluded)
	if s.Error != "" {
		fmt.Fprintf(w, "error:     %s\n", s.Error)
	}
}

func newSet(o *options) *cobra.Command {
	long := "Changes one of the daemon's settings, which it keeps across restarts (with no arguments,\nprints them). Keys:\n"
	for _, k := range settingKeys {
		long += fmt.Sprintf("  %-13s %s\n", k.key, k.help)
	}
	return &cobra.Command{
		Use:   "set [KEY VALUE]",
		Short: "Change a setting of the daemon (lockdown, allow-lan, auto-connect, mode, profile, dns)",
		Long:  long,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 0 && len(args) != 2 {
				return fmt.Errorf("want KEY VALUE, or nothing to print the settings")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			req := request{Op: "settings"}
			if len(args) == 2 {
				req = request{Op: "set", Set: &setRequest{Key: args[0], Value: args[1]}}
				// The daemon keeps the settings and applies them
				// (lockdown's kill switch): start one, as connect does.
				if _, err := call(o.socket, request{Op: "status"}); err != nil {
					if err := startDaemon(o); err != nil {
						return err
					}
				}
			}
			resp, err := call(o.socket, req)
			if err != nil {
				return err
			}
			if s := resp.Settings; s != nil {
				printSettings(cmd, s)
			}
			return nil
		},
	}
}

func printSettings(cmd *cobra.Command, s *settings) {
	w := cmd.OutOrStdout()
	onOff := map[bool]string{true: "on", false: "off"}
	fmt.Fprintf(w, "lockdown:     %s\nallow-lan:    %s\nauto-connect: %s\n", onOff[s.Lockdown], onOff[s.AllowLAN], onOff[s.AutoConnect])
	if c := s.Connect; c != nil {
		fmt.Fprintf(w, "mode:         %s\nprofile:      %s\ndns:          %v\n", c.Mode, c.Profile, c.DNS)
		switch {
		case c.Network != "":
			fmt.Fprintf(w, "network:      the last connect's network file\n")
		case c.Directory != "":
			fmt.Fprintf(w, "network:      %s\n", c.Directory)
		}
	}
}
