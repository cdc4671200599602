package main

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"net/url"

	"github.com/nym-go/nym/mixnet/client"
	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/vpn"
)

// plan is what a connection needs from the topology: the exit's router,
// and the gateways and directory that must stay reachable outside the
// tunnel.
type plan struct {
	dirKey  ed25519.PublicKey
	router  client.Address
	exit    directory.Key
	entries []directory.Node // candidates, the chosen one first
	outside []netip.AddrPort // entry gateways' client ports and the directory
	profile vpn.Profile
	dirURL  string
}

// makePlan fetches the topology and picks the exit (and the entry when
// asked for one).
func makePlan(ctx context.Context, req connectRequest) (*plan, error) {
	keyBytes, err := base64.RawURLEncoding.DecodeString(req.DirectoryKey)
	if err != nil || len(keyBytes) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("--directory-key: not a base64url ed25519 key")
	}
	p := &plan{dirKey: keyBytes, dirURL: req.DirectoryURL}
	if p.profile, err = vpn.ProfileByName(req.Profile); err != nil {
		return nil, err
	}
	dc := directory.Client{BaseURL: req.DirectoryURL, Key: p.dirKey}
	top, err := dc.Topology(ctx)
	if err != nil {
		return nil, fmt.Errorf("fetching the topology: %w", err)
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
		if ap, err := resolve(ctx, n.ClientsAddr); err == nil {
			p.outside = append(p.outside, ap)
		}
	}
	if req.Entry != "" && (len(p.entries) == 0 || p.entries[0].Identity.String() != req.Entry) {
		return nil, fmt.Errorf("entry gateway %s is not in the topology", req.Entry)
	}
	if u, err := url.Parse(req.DirectoryURL); err == nil {
		port := u.Port()
		if port == "" {
			port = map[string]string{"https": "443"}[u.Scheme]
			if port == "" {
				port = "80"
			}
		}
		if ap, err := resolve(ctx, net.JoinHostPort(u.Hostname(), port)); err == nil {
			p.outside = append(p.outside, ap)
		}
	}
	return p, nil
}

func resolve(ctx context.Context, hostport string) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return netip.AddrPort{}, err
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(addrs) == 0 {
		return netip.AddrPort{}, fmt.Errorf("resolving %s: %w", host, err)
	}
	ap, err := netip.ParseAddrPort(net.JoinHostPort(addrs[0].Unmap().String(), port))
	return ap, err
}

// dialer returns a vpn.Dialer that connects through the plan's entry
// gateways: the chosen one first, then the next one on each redial, so a
// lost gateway is left behind.
func (p *plan) dialer(log *slog.Logger) vpn.Dialer {
	return func(ctx context.Context, attempt int) (vpn.Mixnet, client.Address, error) {
		lp := p.profile.Loopix
		cfg := client.Config{
			DirectoryURL: p.dirURL,
			DirectoryKey: p.dirKey,
			Loopix:       &lp,
			Logger:       log,
		}
		if len(p.entries) > 0 {
			cfg.Gateway = p.entries[attempt%len(p.entries)].Identity
		}
		c, err := client.Connect(ctx, cfg)
		if err != nil {
			return nil, client.Address{}, err
		}
		return c, p.router, nil
	}
}
