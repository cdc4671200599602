package main

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"

	"github.com/nym-go/nym/mixnet/client"
	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/vpn"
)

// plan is what a connection needs from the topology: the exit's router and
// the entry gateways to try. Nothing in it decides what bypasses the tunnel:
// only the gateway the tunnel dials is let out (see outside).
type plan struct {
	network *directory.Network
	// cache is the file keeping the last verified consensus ("": none).
	cache   string
	router  client.Address
	exit    directory.Key
	entries []directory.Node // candidates, the chosen one first
	profile vpn.Profile
	out     *outside
	// tickets pays entry gateways that require tickets (nil: none).
	tickets client.TicketSource
	// mix is the mixnet client of the current connection, for status.
	mix atomic.Pointer[client.Client]
}

// makePlan fetches the consensus of the request's network through out
// (keeping it in cache, when not "") and picks the exit (and the entry when
// asked for one). req must have passed check.
func makePlan(ctx context.Context, req connectRequest, out *outside, cache string) (*plan, error) {
	p := &plan{network: req.network, cache: cache, out: out}
	var err error
	if p.profile, err = vpn.ProfileByName(req.Profile); err != nil {
		return nil, err
	}
	top, err := fetchTopology(ctx, p.network, out, cache)
	if err != nil {
		return nil, err
	}
	var exits []directory.Node
	for _, n := range top.Exit {
		if n.RouterKey != nil && (req.Exit == "" || n.Identity.String() == req.Exit) {
			exits = append(exits, n)
		}
	}
	if len(exits) == 0 {
		return nil, fmt.Errorf("no exit gateway with an IP packet router in the topology (wanted %q)", req.Exit)
	}
	ex := exits[rand.IntN(len(exits))]
	p.exit = ex.Identity
	p.router = client.Address{Identity: *ex.RouterKey, Gateway: ex.Identity}
	for _, n := range top.Entry {
		if req.Entry != "" && n.Identity.String() == req.Entry {
			p.entries = append([]directory.Node{n}, p.entries...)
		} else {
			p.entries = append(p.entries, n)
		}
	}
	if req.Entry != "" && (len(p.entries) == 0 || p.entries[0].Identity.String() != req.Entry) {
		return nil, fmt.Errorf("entry gateway %s is not in the topology", req.Entry)
	}
	return p, nil
}

// fetchTopology fetches and verifies network's consensus through out,
// keeping it in cache (when not "").
func fetchTopology(ctx context.Context, network *directory.Network, out *outside, cache string) (*directory.Topology, error) {
	dc := directory.NewNetworkClient(network, out.hc)
	dc.CachePath = cache
	top, err := dc.Topology(ctx)
	if err != nil {
		return nil, fmt.Errorf("fetching the topology: %w", err)
	}
	return top, nil
}

// dialer returns a vpn.Dialer that connects through the plan's entry
// gateways: the chosen one first, then the next one on each redial, so a
// lost gateway is left behind.
func (p *plan) dialer(log *slog.Logger) vpn.Dialer {
	return func(ctx context.Context, attempt int) (vpn.Mixnet, client.Address, error) {
		lp := p.profile.Loopix
		cfg := client.Config{
			Network:        p.network,
			ConsensusCache: p.cache,
			HTTPClient:     p.out.hc,
			DialContext:    p.out.dialGateway,
			Loopix:         &lp,
			Logger:         log,
			Tickets:        p.tickets,
		}
		if len(p.entries) > 0 {
			cfg.Gateway = p.entries[attempt%len(p.entries)].Identity
		}
		c, err := client.Connect(ctx, cfg)
		if err != nil {
			return nil, client.Address{}, err
		}
		p.mix.Store(c)
		return c, p.router, nil
	}
}
