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
		Entry:    wgnest.Peer{PublicKey: regE.GatewayKey, PSK: regE.PSK, Endpoint: entryEP},
		Exit:     wgnest.Peer{PublicKey: regX.GatewayKey, PSK: regX.PSK, Endpoint: exitEP},
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
	ft.log.Info("fast mode: connected", "entry", entry.Identity, "exit", exit.Identity, "addresses", prefixes)
	return &fastLeg{nest: nest, entry: entry, exit: exit, release: release,
		addrs: ipr.AddrPair{V4: regX.AddrV4.Addr(), V6: regX.AddrV6.Addr()}}, nil
}

// down tears leg down, but the kill switch.
func (ft *fastTunnel) down(leg *fastLeg) error {
	leg.nest.Close()
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
// ends; Close then tears down what is up.
func (ft *fastTunnel) Run(ctx context.Context) error {
	for {
		ft.mu.Lock()
		leg := ft.leg
		ft.mu.Unlock()
		err := leg.nest.Watch(ctx, ft.stale)
		if ctx.Err() != nil {
			return nil
		}
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
		bad := leg.exit.Identity
		if blameEntry {
			bad = leg.entry.Identity
		}
		ft.refresh(ctx, bad)
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
			leg, err = ft.up(ctx)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return nil
			}
			ft.log.Warn("fast mode: reconnecting failed", "err", err, "retry_in", backoff)
			select {
			case <-ctx.Done():
				return nil
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
		leg.nest.Close()
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
	}
	return s
}
