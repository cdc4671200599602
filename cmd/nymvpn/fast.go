package main

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net/netip"
	"sync"
	"time"

	"github.com/nym-go/nym/ipr"
	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/ticket"
	"github.com/nym-go/nym/vpn"
	"github.com/nym-go/nym/wgnest"
	"github.com/nym-go/nym/wgreg"
)

// Modes of connect.
const (
	modeAnonymous = "anonymous" // through the mixnet (the default)
	modeFast      = "fast"      // two hops of nested WireGuard: entry, exit
)

// defaultFastStale is how long the nested tunnel may bring nothing back
// from the exit, though probed, before it is rebuilt through another entry
// or exit.
const defaultFastStale = 15 * time.Second

// fastPlan is what fast mode takes from the consensus: the gateways that
// announce a WireGuard address, the chosen ones first.
type fastPlan struct {
	rotation       uint64
	entries, exits []directory.Node
}

// makeFastPlan fetches the consensus through out and lists the candidate
// entries and exits (only the ones asked for, when --entry or --exit
// names one), in random order.
func makeFastPlan(ctx context.Context, req connectRequest, out *outside, cache string) (*fastPlan, error) {
	top, err := fetchTopology(ctx, req.network, out, cache)
	if err != nil {
		return nil, err
	}
	p := &fastPlan{rotation: top.Rotation}
	// Which gateways serve as what is the contract's (wgreg): an entry
	// gateway's WireGuard door is an entry's, an exit-capable node's an
	// exit's, whatever role the epoch gives the node.
	pick := func(nodes []directory.Node, want, role string) ([]directory.Node, error) {
		var c []directory.Node
		for _, n := range nodes {
			if want == "" || n.Identity.String() == want {
				c = append(c, n)
			}
		}
		if len(c) == 0 {
			return nil, fmt.Errorf("no %s gateway with a WireGuard address in the topology (wanted %q)", role, want)
		}
		mrand.Shuffle(len(c), func(i, j int) { c[i], c[j] = c[j], c[i] })
		return c, nil
	}
	if p.entries, err = pick(wgreg.Entries(top), req.Entry, "entry"); err != nil {
		return nil, err
	}
	if p.exits, err = pick(wgreg.Exits(top), req.Exit, "exit"); err != nil {
		return nil, err
	}
	return p, nil
}

// wgKey is a WireGuard (X25519) key pair.
type wgKey struct{ priv, pub [32]byte }

func newWGKey() (wgKey, error) {
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return wgKey{}, err
	}
	var w wgKey
	copy(w.priv[:], k.Bytes())
	copy(w.pub[:], k.PublicKey().Bytes())
	return w, nil
}

// fastTunnel is a fast-mode connection: WireGuard peers registered at an
// entry and, through it, at an exit, and the nested tunnel between them
// (wgnest) on nymvpn0. When nothing comes back from the exit it is torn
// down and built again through another entry (the entry went silent too)
// or exit; the kill switch stays on throughout, so nothing leaks while it
// is down.
type fastTunnel struct {
	log  *slog.Logger
	host host
	out  *outside
	plan *fastPlan
	// replan fetches the consensus again and makes a new plan: gateways
	// come and go and their keys rotate while a tunnel lives.
	replan func(context.Context) (*fastPlan, error)
	dns    []netip.Addr
	stale  time.Duration
	// book pays the gateways that require tickets; nil pays nothing.
	book *fastBook
	// onState, when set, is told every change of state (see notify).
	onState func(vpn.State)

	// netChanged holds one networkChanged not yet acted on (made by
	// changes, as the struct is built by a literal).
	netChangedOnce sync.Once
	netChanged     chan struct{}

	mu         sync.Mutex
	leg        *fastLeg // nil while reconnecting
	state      vpn.State
	entryIdx   int // next entry and exit to use, into plan's lists
	exitIdx    int
	connected  time.Time
	reconnects uint64
}

// fastLeg is one nested tunnel through one entry to one exit.
type fastLeg struct {
	nest        *wgnest.Tunnel
	entry, exit directory.Node
	addrs       ipr.AddrPair // the user's addresses, the exit's
	release     func()       // closes the kill switch's hole for the entry's WireGuard
	outerV4     netip.Addr   // the client's address at the entry
	// stopKeepers stops the goroutines that top up the allowances at
	// the entry and the exit, and waits for them.
	stopKeepers func()
}

// close stops the leg's keepers and tears the nested tunnel down.
func (leg *fastLeg) close() {
	if leg.stopKeepers != nil {
		leg.stopKeepers()
	}
	leg.nest.Close()
}

// keepAllowances starts, for each hop whose gateway meters the peer, the
// top-ups of its allowance before it runs out (wgnest.KeepAllowance): the
// same key registered again with one new ticket, at the entry directly,
// at the exit through the entry. Without them a long download used up a
// ticket's 500 MB, the gateway removed the peer and the tunnel stalled
// until it was rebuilt.
func (ft *fastTunnel) keepAllowances(leg *fastLeg, outerPub, innerPub [32]byte, grants [2]wgnest.Grant) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	topUp := func(ctx context.Context, hop wgnest.Hop) (wgnest.Grant, error) {
		return ft.topUp(ctx, leg, hop, outerPub, innerPub)
	}
	for hop, g := range grants {
		wg.Go(func() { leg.nest.KeepAllowance(ctx, wgnest.Hop(hop), g, topUp) })
	}
	leg.stopKeepers = func() {
		cancel()
		wg.Wait()
	}
}

// topUp registers hop's key again at leg's gateway, paying with one
// ticket of the hop's type, on a registration link of its own.
func (ft *fastTunnel) topUp(ctx context.Context, leg *fastLeg, hop wgnest.Hop, outerPub, innerPub [32]byte) (wgnest.Grant, error) {
	ft.mu.Lock()
	opts := wgreg.Options{Rotation: ft.plan.rotation, DialContext: ft.out.dialGateway, Logger: ft.log}
	ft.mu.Unlock()
	var err error
	if hop == wgnest.HopEntry {
		opts.EntrySpend, err = ft.book.spend(ticket.TypeWireGuardEntry, leg.entry.Identity, time.Now())
	} else {
		opts.ExitSpend, err = ft.book.spend(ticket.TypeWireGuardExit, leg.exit.Identity, time.Now())
	}
	if err != nil {
		return wgnest.Grant{}, fmt.Errorf("topping up at the %s: %w", hop, err)
	}
	s, err := wgreg.Dial(ctx, leg.entry, opts)
	if err != nil {
		return wgnest.Grant{}, fmt.Errorf("topping up at the %s: %w", hop, err)
	}
	defer s.Close()
	var reg wgreg.Registration
	want := leg.addrs.V4
	if hop == wgnest.HopEntry {
		reg, err = s.RegisterEntry(ctx, outerPub)
		want = leg.outerV4
	} else {
		reg, err = s.RegisterExit(ctx, leg.exit, innerPub)
	}
	if err != nil {
		return wgnest.Grant{}, fmt.Errorf("topping up at the %s: %w", hop, err)
	}
	if reg.AddrV4.Addr() != want {
		// The gateway had dropped the peer and took the key as new: the
		// tunnel's addresses there are gone, so it must be rebuilt.
		return wgnest.Grant{}, fmt.Errorf("topping up at the %s: it gave a new address %v (was %v)", hop, reg.AddrV4, want)
	}
	ft.log.Info("fast mode: allowance topped up", "hop", hop.String(), "left_bytes", reg.Allowance)
	return wgnest.GrantOf(reg), nil
}

// up registers at the next entry and exit and brings the nested tunnel up
// on a new nymvpn0, returning once the exit answered a handshake.
func (ft *fastTunnel) up(ctx context.Context) (_ *fastLeg, err error) {
	ft.mu.Lock()
	entry := ft.plan.entries[ft.entryIdx%len(ft.plan.entries)]
	var exit directory.Node
	found := false
	for i := range len(ft.plan.exits) {
		exit = ft.plan.exits[(ft.exitIdx+i)%len(ft.plan.exits)]
		if exit.Identity != entry.Identity {
			found = true
			break
		}
	}
	ft.mu.Unlock()
	if !found {
		return nil, fmt.Errorf("fast mode: no exit other than the entry %s", entry.Identity)
	}
	entryEP, _ := entry.WGAddrPort()
	exitEP, _ := exit.WGAddrPort()
	// Two keys: the entry and the exit hold no common identifier.
	outerKey, err := newWGKey()
	if err != nil {
		return nil, err
	}
	innerKey, err := newWGKey()
	if err != nil {
		return nil, err
	}
	opts := wgreg.Options{Rotation: ft.plan.rotation, DialContext: ft.out.dialGateway, Logger: ft.log}
	// Gateways that require tickets take one of each WireGuard type; a
	// book without them registers without (networks that take none),
	// and a refusal then says what to do.
	var noTickets error
	opts.EntrySpend, opts.ExitSpend, err = ft.book.spends(entry.Identity, exit.Identity, time.Now())
	if errors.Is(err, errNoFastTickets) {
		noTickets, err = err, nil
	}
	if err != nil {
		return nil, fmt.Errorf("fast mode: tickets: %w", err)
	}
	withHint := func(err error) error {
		if noTickets != nil && errors.Is(err, wgreg.ErrGateway) {
			return fmt.Errorf("%w (%v)", err, noTickets)
		}
		return err
	}
	regE, sess, err := wgreg.RegisterEntry(ctx, entry, outerKey.pub, opts)
	if err != nil {
		return nil, fmt.Errorf("registering at entry %s: %w", entry.Identity, withHint(err))
	}
	regX, err := sess.RegisterExit(ctx, exit, innerKey.pub)
	sess.Close()
	if err != nil {
		return nil, fmt.Errorf("registering at exit %s through entry %s: %w", exit.Identity, entry.Identity, withHint(err))
	}
	// The endpoints are the consensus's, not the registrations': what a
	// gateway answers opens no hole and sends nothing elsewhere.
	release, err := ft.host.OpenUDP(entryEP)
	if err != nil {
		return nil, fmt.Errorf("kill switch: letting out %s: %w", entryEP, err)
	}
	defer func() {
		if err != nil {
			release()
		}
	}()
	var prefixes []netip.Prefix
	for _, p := range []netip.Prefix{regX.AddrV4, regX.AddrV6} {
		if p.IsValid() {
			prefixes = append(prefixes, p)
		}
	}
	dev, err := ft.host.Up(prefixes, wgnest.DefaultInnerMTU, ft.dns)
	if err != nil {
		return nil, errors.Join(err, ft.host.Unroute())
	}
	nest, err := wgnest.New(wgnest.Config{
		TUN:      dev,
		InnerKey: innerKey.priv,
		OuterKey: outerKey.priv,
		Entry:    wgnest.PeerOf(regE, entryEP),
		Exit:     wgnest.PeerOf(regX, exitEP),
		OuterV4:  regE.AddrV4.Addr(),
		OuterV6:  regE.AddrV6.Addr(),
		Mark:     fwMark,
		Logger:   ft.log,
	})
	if err != nil {
		return nil, errors.Join(err, ft.host.Unroute())
	}
	hctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := nest.WaitHandshake(hctx); err != nil {
		nest.Close()
		return nil, errors.Join(fmt.Errorf("through entry %s to exit %s: %w", entry.Identity, exit.Identity, err), ft.host.Unroute())
	}
	ft.log.Info("fast mode: connected", "entry", entry.Identity, "exit", exit.Identity, "addresses", prefixes,
		"allowance_entry", regE.Allowance, "allowance_exit", regX.Allowance)
	leg := &fastLeg{nest: nest, entry: entry, exit: exit, release: release, outerV4: regE.AddrV4.Addr(),
		addrs: ipr.AddrPair{V4: regX.AddrV4.Addr(), V6: regX.AddrV6.Addr()}}
	ft.keepAllowances(leg, outerKey.pub, innerKey.pub, [2]wgnest.Grant{
		wgnest.HopEntry: wgnest.GrantOf(regE),
		wgnest.HopExit:  wgnest.GrantOf(regX),
	})
	return leg, nil
}

// down tears leg down, but the kill switch.
func (ft *fastTunnel) down(leg *fastLeg) error {
	leg.close()
	err := ft.host.Unroute()
	leg.release()
	return err
}

// connect brings the first leg up, trying each entry once.
func (ft *fastTunnel) connect(ctx context.Context) error {
	var errs []error
	for range len(ft.plan.entries) {
		leg, err := ft.up(ctx)
		if err == nil {
			ft.mu.Lock()
			ft.leg, ft.state, ft.connected = leg, vpn.StateConnected, time.Now()
			ft.mu.Unlock()
			ft.notify(vpn.StateConnected)
			return nil
		}
		ft.log.Warn("fast mode: connecting failed", "err", err)
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
		ft.mu.Lock()
		ft.entryIdx++
		ft.mu.Unlock()
	}
	return errors.Join(errs...)
}

// Run watches the tunnel and rebuilds it when it goes stale, until ctx
// ends; Close then tears down what is up. When the network changes (see
// networkChanged) a leg that is up is checked at once: WireGuard follows
// the host to a new address or gateway by itself (the entry learns the new
// endpoint from the next packet), so the leg is kept if the exit answers
// within wgnest.MinStale, and rebuilt otherwise.
func (ft *fastTunnel) Run(ctx context.Context) error {
	checking := false // since a change of the network, until the leg answered
	for {
		ft.mu.Lock()
		leg := ft.leg
		ft.mu.Unlock()
		err := untilNetChange(ctx, ft.changes(), func(ctx context.Context) error {
			if !checking {
				return leg.nest.Watch(ctx, ft.stale)
			}
			// Long enough for a probe's handshake to be answered
			// twice: a healthy leg never goes stale in it.
			ctx, cancel := context.WithTimeoutCause(ctx, 2*wgnest.MinStale, errLegAnswers)
			defer cancel()
			return leg.nest.Watch(ctx, wgnest.MinStale)
		})
		if ctx.Err() != nil {
			return nil
		}
		switch {
		case errors.Is(err, errNetChanged):
			ft.log.Info("fast mode: the network changed; checking the tunnel", "entry", leg.entry.Identity, "exit", leg.exit.Identity)
			checking = true
			continue
		case errors.Is(err, errLegAnswers):
			checking = false
			continue
		}
		afterChange := checking
		checking = false
		blameEntry := true
		if se, ok := errors.AsType[*wgnest.StaleError](err); ok {
			blameEntry = se.Outer
		}
		ft.log.Warn("fast mode: tunnel stale; reconnecting", "err", err, "entry", leg.entry.Identity, "exit", leg.exit.Identity)
		ft.mu.Lock()
		ft.leg, ft.state = nil, vpn.StateReconnecting
		ft.mu.Unlock()
		ft.notify(vpn.StateReconnecting)
		if err := ft.down(leg); err != nil {
			ft.log.Warn("fast mode: tearing down", "err", err)
		}
		if !afterChange {
			// Silent with the network as it was: a gateway's fault.
			bad := leg.exit.Identity
			if blameEntry {
				bad = leg.entry.Identity
			}
			ft.refresh(ctx, bad)
		}
		backoff := time.Second
		for attempt := 0; ; attempt++ {
			// The silent gateway went last; on failures, try the next
			// entry, then the next exit, and so on.
			if attempt > 0 {
				ft.mu.Lock()
				if attempt%2 == 1 {
					ft.entryIdx++
				} else {
					ft.exitIdx++
				}
				ft.mu.Unlock()
			}
			err = untilNetChange(ctx, ft.changes(), func(ctx context.Context) error {
				leg, err = ft.up(ctx)
				return err
			})
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, errNetChanged) {
				// Cut short by a change of the uplink: try the new
				// one now.
				ft.log.Info("fast mode: the network changed; trying again now", "err", err)
				backoff = time.Second
				continue
			}
			ft.log.Warn("fast mode: reconnecting failed", "err", err, "retry_in", backoff)
			select {
			case <-ctx.Done():
				return nil
			case <-ft.changes():
				// A route came back or changed: the backoff was for
				// the network before.
				backoff = time.Second
				continue
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 10*time.Second)
		}
		ft.mu.Lock()
		ft.leg, ft.state = leg, vpn.StateConnected
		ft.reconnects++
		ft.mu.Unlock()
		ft.notify(vpn.StateConnected)
	}
}

// errLegAnswers ends the check of a leg after a network change: it did not
// go stale.
var errLegAnswers = errors.New("fast mode: the tunnel answers after the network change")

// changes is the channel networkChanged posts to.
func (ft *fastTunnel) changes() chan struct{} {
	ft.netChangedOnce.Do(func() { ft.netChanged = make(chan struct{}, 1) })
	return ft.netChanged
}

// networkChanged tells the tunnel that the uplink came back or changed:
// it checks the leg now (see Run), or, reconnecting, tries again now. It does not
// block; calls while one is pending count once.
func (ft *fastTunnel) networkChanged() {
	select {
	case ft.changes() <- struct{}{}:
	default:
	}
}

// refresh replaces the plan with one from a fresh consensus (keeping the
// old one if none comes), with the gateway bad last, and starts again from
// the first entry and exit.
func (ft *fastTunnel) refresh(ctx context.Context, bad directory.Key) {
	var p *fastPlan
	if ft.replan != nil {
		var err error
		if p, err = ft.replan(ctx); err != nil {
			ft.log.Warn("fast mode: keeping the old plan", "err", err)
		}
	}
	last := func(nodes []directory.Node) []directory.Node {
		out := make([]directory.Node, 0, len(nodes))
		var tail []directory.Node
		for _, n := range nodes {
			if n.Identity == bad {
				tail = append(tail, n)
			} else {
				out = append(out, n)
			}
		}
		return append(out, tail...)
	}
	ft.mu.Lock()
	defer ft.mu.Unlock()
	if p == nil {
		p = ft.plan
	}
	ft.plan = &fastPlan{rotation: p.rotation, entries: last(p.entries), exits: last(p.exits)}
	ft.entryIdx, ft.exitIdx = 0, 0
}

// Close tears down the leg that is up, but the kill switch and the routes
// (the daemon's host.Down removes those). Run must have returned.
func (ft *fastTunnel) Close() {
	ft.mu.Lock()
	leg := ft.leg
	ft.leg, ft.state = nil, vpn.StateClosed
	ft.mu.Unlock()
	if leg != nil {
		leg.close()
		leg.release()
	}
	ft.out.close()
}

// status is what `nymvpn status` shows in fast mode.
func (ft *fastTunnel) status() *status {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	st := &vpn.Stats{State: ft.state, MTU: wgnest.DefaultInnerMTU, Connected: ft.connected, Uptime: time.Since(ft.connected), Reconnects: ft.reconnects}
	s := &status{Mode: modeFast, State: ft.state.String(), MTU: wgnest.DefaultInnerMTU, Stats: st}
	if ft.leg != nil {
		ns := ft.leg.nest.Stats()
		st.Addrs = ft.leg.addrs
		st.BytesUp, st.BytesDown = ns.Inner.TxBytes, ns.Inner.RxBytes
		s.Entry, s.Exit = ft.leg.entry.Identity.String(), ft.leg.exit.Identity.String()
		s.Addrs = []string{ft.leg.addrs.V4.String(), ft.leg.addrs.V6.String()}
		if !ns.Inner.LastHandshake.IsZero() {
			s.Handshake = time.Since(ns.Inner.LastHandshake).Round(time.Second)
		}
		for _, hop := range []wgnest.Hop{wgnest.HopEntry, wgnest.HopExit} {
			a := ft.leg.nest.Allowance(hop)
			h := hopAllowance{Hop: hop.String(), Metered: a.Metered, Left: a.Left, TopUps: a.TopUps}
			if a.Err != nil {
				h.Error = a.Err.Error()
			}
			s.Allowances = append(s.Allowances, h)
		}
	}
	return s
}

// hopAllowance is where one hop's allowance stands (`nymvpn status`).
type hopAllowance struct {
	Hop     string `json:"hop"`
	Metered bool   `json:"metered"`
	Left    uint64 `json:"left_bytes,omitempty"`
	TopUps  uint64 `json:"top_ups,omitempty"`
	// Error is the last top-up's failure: past the bytes left the
	// gateway removes the peer, and the tunnel reconnects (or, without
	// tickets, stays down behind the kill switch).
	Error string `json:"top_up_error,omitempty"`
}
