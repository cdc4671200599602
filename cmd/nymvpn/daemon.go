package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/nym-go/nym/mixnet/client"
	"github.com/nym-go/nym/vpn"
)

// request and response are the control protocol: one JSON object each way
// per connection to the socket.
// maxRequest bounds one request on the control socket. A connect request is
// well under 1 KiB; the socket is root's, but the daemon must not buffer
// whatever a confused or hostile writer sends.
const maxRequest = 64 << 10

// The events op is the exception: its answer is a stream of JSON lines (see
// events.go) until either side closes.
type request struct {
	Op      string          `json:"op"` // connect, status, disconnect, set, settings, events
	Connect *connectRequest `json:"connect,omitempty"`
	Set     *setRequest     `json:"set,omitempty"`
}

// setRequest changes one setting (`nymvpn set KEY VALUE`).
type setRequest struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

type response struct {
	Error    string    `json:"error,omitempty"`
	Status   *status   `json:"status,omitempty"`
	Settings *settings `json:"settings,omitempty"` // set and settings
}

// status is what `nymvpn status` shows.
type status struct {
	State string `json:"state"`
	// Mode is anonymous (the mixnet) or fast (WireGuard through an entry
	// and an exit).
	Mode   string     `json:"mode,omitempty"`
	Entry  string     `json:"entry,omitempty"` // fast mode's entry gateway
	Exit   string     `json:"exit,omitempty"`
	Router string     `json:"router,omitempty"`
	Addrs  []string   `json:"addresses,omitempty"`
	MTU    int        `json:"mtu,omitempty"`
	Stats  *vpn.Stats `json:"stats,omitempty"`
	// Tickets is the account at the entry gateway: bytes left, or
	// unmetered.
	Tickets *client.TicketStatus `json:"tickets,omitempty"`
	Error   string               `json:"last_error,omitempty"`
	// Handshake is the age of the last WireGuard handshake with the exit
	// (fast mode).
	Handshake time.Duration `json:"handshake_age_ns,omitempty"`
	// Allowances are fast mode's bytes left at the entry and the exit,
	// and the last top-up's failure.
	Allowances []hopAllowance `json:"allowances,omitempty"`
	// KillSwitch: the kill switch is in force (also while disconnected,
	// after a failed connect or a restart, until `nymvpn disconnect`).
	KillSwitch bool `json:"kill_switch"`
	// Lockdown and AllowLAN are the settings in force (`nymvpn set`).
	Lockdown bool `json:"lockdown"`
	AllowLAN bool `json:"allow_lan"`
	// Excluded are the programs outside the tunnel (`nymvpn exclude`),
	// as "PID NAME".
	Excluded []string `json:"excluded,omitempty"`
}

// daemon owns at most one tunnel and the host changes made for it.
type daemon struct {
	log       *slog.Logger
	statePath string

	mu      sync.Mutex
	tunnel  *vpn.Tunnel
	plan    *plan
	fast    *fastTunnel // instead of tunnel and plan in fast mode
	cancel  context.CancelFunc
	done    chan struct{}
	host    host
	lastErr string
	// settings are the daemon's settings file, as loaded at start and
	// changed by set since.
	settings settings
	// events publishes the tunnel's state changes to `nymvpn events`.
	events events
	// autoStop ends auto-connect's attempts; nil when there are none.
	autoMu   sync.Mutex
	autoStop context.CancelFunc
}

func newDaemon(o *options) *cobra.Command {
	var statePath string
	cmd := &cobra.Command{
		Use:   "daemon",
		Short: "Run the daemon that holds the tunnel (connect starts it when needed)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			log, err := o.logger()
			if err != nil {
				return err
			}
			if statePath == "" {
				statePath = defaultStatePath(o.socket)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			d := &daemon{log: log, statePath: statePath}
			return d.serve(ctx, o.socket)
		},
	}
	cmd.Flags().StringVar(&statePath, "state", "", "file recording host changes, for restoring them after a crash or reboot (default: under "+stateDir+", one per --socket)")
	return cmd
}

// defaultStatePath is the state file of the daemon at socket: one per
// socket, since a daemon per socket (one per network namespace, say) must
// not restore another's changes.
func defaultStatePath(socket string) string {
	if socket == defaultSocket {
		return defaultState
	}
	sum := sha256.Sum256([]byte(socket))
	return filepath.Join(stateDir, "platform-"+hex.EncodeToString(sum[:8])+".state")
}

// consensusCachePath is where the daemon keeping its state at statePath
// caches the last verified consensus: beside it, in the state directory
// (root's alone, as platform requires of it; the file is 0600), one per
// state file as the state is one per socket. A restarted daemon then
// connects while no authority answers, as long as the consensus is fresh.
func consensusCachePath(statePath string) string {
	return besideState(statePath, "consensus", ".json")
}

func (d *daemon) serve(ctx context.Context, socket string) error {
	h, err := newHost(d.statePath)
	if err != nil {
		return err
	}
	d.host = h
	// A settings file the daemon cannot read stops it, with the kill
	// switch a crashed run or the boot unit left still in force.
	if d.settings, err = loadSettings(settingsPath(d.statePath)); err != nil {
		return err
	}
	// Allow-LAN holds for any kill switch, lockdown's too: the printer
	// stays reachable while disconnected.
	if err := d.host.SetAllowLAN(d.settings.AllowLAN); err != nil {
		d.log.Warn("allow-LAN", "err", err)
	}
	if d.settings.Lockdown {
		if err := d.host.KillSwitch(netip.AddrPort{}); err != nil {
			return fmt.Errorf("lockdown: %w", err)
		}
	}
	d.events.publish(event{State: stateDisconnected})
	if err := os.MkdirAll(filepath.Dir(socket), 0o700); err != nil {
		return fmt.Errorf("socket directory: %w", err)
	}
	os.Remove(socket) // a stale socket from a crashed daemon
	ln, err := net.Listen("unix", socket)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(socket, 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("control socket: %w", err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { <-ctx.Done(); ln.Close() })
	wg.Go(func() { d.watchNetwork(ctx) }) // reconnect when the uplink returns or changes (netwatch.go)
	d.log.Info("nymvpn daemon listening", "socket", socket, "lockdown", d.settings.Lockdown)
	if d.settings.AutoConnect && d.settings.Connect.hasNetwork() {
		actx, stop := context.WithCancel(ctx)
		d.autoMu.Lock()
		d.autoStop = stop
		d.autoMu.Unlock()
		wg.Go(func() { d.autoConnect(actx); stop() })
	}
	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				break
			}
			// Out of file descriptors, say: wait and try again, as
			// net/http does. Never a teardown: that would drop the kill
			// switch and leak.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			d.log.Warn("control socket: accept failed; retrying", "err", err, "in", backoff)
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			continue
		}
		backoff = 0
		wg.Go(func() { d.handle(ctx, conn) })
	}
	d.disconnect()
	wg.Wait()
	return nil
}

func (d *daemon) handle(ctx context.Context, conn net.Conn) {
	defer conn.Close()
	var req request
	conn.SetDeadline(time.Now().Add(2 * time.Minute))
	if err := json.NewDecoder(io.LimitReader(conn, maxRequest)).Decode(&req); err != nil {
		d.log.Warn("control socket: bad request", "err", err)
		return
	}
	var resp response
	switch req.Op {
	case "connect":
		d.stopAutoConnect()
		if req.Connect == nil {
			resp.Error = "connect: no parameters"
		} else if err := d.connect(ctx, *req.Connect); err != nil {
			resp.Error = err.Error()
		}
		resp.Status = d.status()
	case "status":
		resp.Status = d.status()
	case "disconnect":
		d.stopAutoConnect()
		if err := d.disconnect(); err != nil {
			resp.Error = err.Error()
		}
		resp.Status = d.status()
	case "set":
		if req.Set == nil {
			resp.Error = "set: no key"
		} else if err := d.set(req.Set.Key, req.Set.Value); err != nil {
			resp.Error = err.Error()
		}
		resp.Settings = d.currentSettings()
	case "settings":
		resp.Settings = d.currentSettings()
	case "events":
		d.streamEvents(ctx, conn)
		return
	default:
		resp.Error = fmt.Sprintf("unknown op %q", req.Op)
	}
	if resp.Status != nil {
		resp.Status.Excluded = excludedPrograms()
	}
	json.NewEncoder(conn).Encode(resp)
}

// connect brings the tunnel up and returns once it carries traffic.
func (d *daemon) connect(ctx context.Context, req connectRequest) (err error) {
	if err := req.check(); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.tunnel != nil || d.fast != nil {
		return errors.New("already connected; disconnect first")
	}
	d.rememberLocked(req)
	d.events.publish(event{State: stateConnecting, Mode: req.Mode})
	defer func() {
		if err != nil {
			d.events.publish(event{State: stateError, Mode: req.Mode, Error: err.Error()})
		}
	}()
	cctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	out, err := newOutside(cctx, req.network, true)
	if err != nil {
		return err
	}
	out.open = d.host.Open
	// The allow-lan setting, or --allow-lan for this connection.
	if err := d.host.SetAllowLAN(req.AllowLAN || d.settings.AllowLAN); err != nil {
		out.close()
		return err
	}
	// The kill switch goes up before anything is fetched: from here on
	// only the daemon's marked connections to the directory, and then to
	// the entry gateway it dials, leave outside the tunnel. One kept from
	// an earlier run stays on even if this connect does not ask for it.
	if req.KillSwitch || d.host.KillSwitchOn() || d.settings.Lockdown {
		if err := d.host.KillSwitch(out.dir); err != nil {
			return err
		}
	}
	if req.Mode == modeFast {
		return d.connectFast(cctx, req, out)
	}
	p, err := makePlan(cctx, req, out, consensusCachePath(d.statePath))
	if err != nil {
		return d.failed(err, out)
	}
	p.tickets = &client.BookTickets{Path: ticketBookPath(d.statePath, req.network)}
	t, err := vpn.Connect(cctx, vpn.Config{Dial: p.dialer(d.log), Profile: p.profile, Logger: d.log, OnState: d.onState(modeAnonymous)})
	if err != nil {
		return d.failed(err, out)
	}
	a := t.Addrs()
	prefixes := []netip.Prefix{netip.PrefixFrom(a.V4, 16), netip.PrefixFrom(a.V6, 112)}
	dev, err := d.host.Up(prefixes, t.MTU(), req.DNS)
	if err != nil {
		t.Close()
		return d.failed(err, out)
	}
	rctx, rcancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	d.tunnel, d.plan, d.cancel, d.done, d.lastErr = t, p, rcancel, done, ""
	go func() {
		defer close(done)
		if err := t.Run(rctx, dev); err != nil {
			// The kill switch stays on: traffic must not leak until
			// the user disconnects.
			d.log.Error("tunnel stopped", "err", err)
			d.mu.Lock()
			d.lastErr = err.Error()
			d.mu.Unlock()
			d.events.publish(event{State: stateError, Mode: modeAnonymous, Error: err.Error()})
		}
	}()
	if p.profile.Weak {
		d.log.Warn("profile " + p.profile.Name + ": " + p.profile.Description)
	}
	return nil
}

// connectFast is connect in fast mode, once the kill switch is on.
func (d *daemon) connectFast(ctx context.Context, req connectRequest, out *outside) error {
	replan := func(ctx context.Context) (*fastPlan, error) {
		return makeFastPlan(ctx, req, out, consensusCachePath(d.statePath))
	}
	p, err := replan(ctx)
	if err != nil {
		return d.failed(err, out)
	}
	ft := &fastTunnel{log: d.log, host: d.host, out: out, plan: p, replan: replan, dns: req.DNS, stale: defaultFastStale, state: vpn.StateConnecting,
		book: &fastBook{path: ticketBookPath(d.statePath, req.network)}, onState: d.onState(modeFast)}
	if err := ft.connect(ctx); err != nil {
		return d.failed(err, out)
	}
	rctx, rcancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	d.fast, d.cancel, d.done, d.lastErr = ft, rcancel, done, ""
	go func() {
		defer close(done)
		ft.Run(rctx)
	}()
	return nil
}

// failed undoes a connect that did not come up, but the kill switch: it
// stays (letting out only the marked directory) until the user disconnects.
func (d *daemon) failed(err error, out *outside) error {
	out.close()
	if uerr := d.host.Unroute(); uerr != nil {
		err = errors.Join(err, uerr)
	}
	switch {
	case d.settings.Lockdown:
		err = fmt.Errorf("%w (lockdown: the kill switch stays on until `nymvpn set lockdown off`)", err)
	case d.host.KillSwitchOn():
		err = fmt.Errorf("%w (the kill switch stays on; `nymvpn disconnect` removes it)", err)
	}
	return err
}

// disconnect tears the tunnel down and restores routes, DNS and firewall:
// the firewall to the lockdown's kill switch when lockdown is on.
func (d *daemon) disconnect() error {
	d.mu.Lock()
	cancel, done := d.cancel, d.done
	d.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.plan != nil {
		d.plan.out.close()
	}
	if d.fast != nil {
		d.fast.Close()
	}
	d.tunnel, d.plan, d.fast, d.cancel, d.done = nil, nil, nil, nil, nil
	if d.host == nil {
		return nil
	}
	d.events.publish(event{State: stateDisconnected})
	if d.settings.Lockdown {
		return d.lockdownLocked()
	}
	return d.host.Down()
}

func (d *daemon) status() *status {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.tunnelStatusLocked()
	s.Lockdown, s.AllowLAN = d.settings.Lockdown, d.settings.AllowLAN
	return s
}

// tunnelStatusLocked is the status of the tunnel and the kill switch.
func (d *daemon) tunnelStatusLocked() *status {
	ks := d.host != nil && d.host.KillSwitchOn()
	if d.fast != nil {
		s := d.fast.status()
		s.KillSwitch, s.Error = ks, d.lastErr
		return s
	}
	if d.tunnel == nil {
		return &status{State: "disconnected", Error: d.lastErr, KillSwitch: ks}
	}
	st := d.tunnel.Stats()
	var ts *client.TicketStatus
	if c := d.plan.mix.Load(); c != nil {
		s := c.TicketStatus()
		ts = &s
	}
	return &status{
		Tickets:    ts,
		KillSwitch: ks,
		Mode:       modeAnonymous,
		State:      st.State.String(),
		Exit:       d.plan.exit.String(),
		Router:     d.plan.router.String(),
		Addrs:      []string{st.Addrs.V4.String(), st.Addrs.V6.String()},
		MTU:        st.MTU,
		Stats:      &st,
		Error:      d.lastErr,
	}
}
