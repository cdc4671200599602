package node

import (
	"crypto/hpke"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/wggate"
	"github.com/nym-go/nym/wgreg"
)

// wireGuardRole is the door a gateway in mode runs: exit gateways and auto
// nodes run the IP router, so theirs is the exit's.
func wireGuardRole(mode Mode) wgreg.Role {
	if mode == ModeEntryGateway {
		return wgreg.RoleEntry
	}
	return wgreg.RoleExit
}

// validateWireGuard checks the WireGuard settings.
func (c *Config) validateWireGuard() error {
	if c.WireGuardListen == "" {
		return nil
	}
	if _, err := netip.ParseAddrPort(c.WireGuardListen); err != nil {
		return fmt.Errorf("wireguard_listen %q: want IP:port: %w", c.WireGuardListen, err)
	}
	if c.WireGuardPeerTimeout.Duration < 0 || c.WireGuardMaxFlows < 0 || c.WireGuardMaxPeersPerIP < 0 || c.WireGuardMaxRelayHandshakes < 0 {
		return errors.New("wireguard_peer_timeout, wireguard_max_flows, wireguard_max_peers_per_ip and wireguard_max_relay_handshakes must not be negative (0 is the default)")
	}
	_, _, err := c.wireGuardRanges()
	return err
}

func (c *Config) wireGuardRanges() (v4, v6 netip.Prefix, err error) {
	for _, r := range []struct {
		name, s string
		p       *netip.Prefix
	}{{"wireguard_range_v4", c.WireGuardRangeV4, &v4}, {"wireguard_range_v6", c.WireGuardRangeV6, &v6}} {
		if r.s == "" {
			continue
		}
		if *r.p, err = netip.ParsePrefix(r.s); err != nil {
			return v4, v6, fmt.Errorf("%s %q: %w", r.name, r.s, err)
		}
	}
	return v4, v6, nil
}

// WireGuardExitDoor returns what the IP router's exit networking must also
// cover when this node runs an exit's WireGuard door: its TUN and client
// ranges. ok is false when it runs none.
func (c *Config) WireGuardExitDoor() (tun string, ranges []netip.Prefix, ok bool) {
	if c.WireGuardListen == "" || c.Mode == ModeMixnode || wireGuardRole(c.Mode) != wgreg.RoleExit {
		return "", nil, false
	}
	v4, v6, _ := c.wireGuardRanges()
	if !v4.IsValid() {
		v4 = wggate.DefaultExitRangeV4
	}
	if !v6.IsValid() {
		v6 = wggate.DefaultExitRangeV6
	}
	tun = c.WireGuardTUN
	if tun == "" {
		tun = wggate.DefaultExitTUN
	}
	return tun, []netip.Prefix{v4, v6}, true
}

// newWireGuard starts the gateway's WireGuard door, if configured. A door
// that cannot start (an exit's needs CAP_NET_ADMIN for its TUN) is logged
// and left out: the node still serves the mixnet, and announces no wg_addr.
func (n *Node) newWireGuard() {
	if n.cfg.WireGuardListen == "" || n.cfg.Mode == ModeMixnode { // a mixnode ignores gateway settings
		return
	}
	listen := netip.MustParseAddrPort(n.cfg.WireGuardListen)
	v4, v6, _ := n.cfg.wireGuardRanges()
	// With require_tickets the door takes the WireGuard tickets through
	// the mixnet gateway's check (one spent set, one report loop).
	var tickets wggate.TicketVerifier
	var quota uint64
	if n.cfg.RequireTickets && n.gateway != nil {
		tickets = wgTickets{n.gateway}
		quota = wireGuardTicketType(wireGuardRole(n.cfg.Mode)).Quota()
		if n.cfg.TicketQuotaBytes > 0 { // test networks: top-ups every few MB
			quota = uint64(n.cfg.TicketQuotaBytes)
		}
	}
	g, err := wggate.New(wggate.Config{
		Role:               wireGuardRole(n.cfg.Mode),
		Identity:           n.self,
		Link:               n.linkKey,
		HPKEKey:            n.wireGuardKey,
		Listen:             listen,
		RangeV4:            v4,
		RangeV6:            v6,
		PeerTimeout:        n.cfg.WireGuardPeerTimeout.Duration,
		MaxFlows:           n.cfg.WireGuardMaxFlows,
		MaxPeersPerIP:      n.cfg.WireGuardMaxPeersPerIP,
		MaxRelayHandshakes: n.cfg.WireGuardMaxRelayHandshakes,
		TUN:                n.cfg.WireGuardTUN,
		RequireTickets:     tickets != nil,
		Tickets:            tickets,
		TicketQuota:        quota,
		Logger:             n.log,
		Registerer:         n.registry,
		Trace:              n.Trace(), // trace_file: fast mode's traffic too
	})
	if err != nil {
		n.log.Warn("WireGuard (fast mode) not running", "err", err)
		return
	}
	n.wg = g
}

// wgAddr is the WireGuard address the descriptor announces.
func (n *Node) wgAddr() string {
	if n.wg == nil {
		return ""
	}
	listen := netip.MustParseAddrPort(n.cfg.WireGuardListen)
	return n.cfg.announce(net.JoinHostPort(listen.Addr().String(), fmt.Sprint(n.wg.Port())))
}

// wireGuardKey is the door's HPKE key for a rotation: the node's ML-KEM key
// of that rotation with its Noise key. Only rotations the node announces or
// still holds are served, so a request cannot make it create keys.
func (n *Node) wireGuardKey(rotation uint64) (hpke.PrivateKey, error) {
	t := n.topo.Load()
	if t == nil {
		return nil, errors.New("no topology yet")
	}
	n.mu.Lock()
	held := rotation == t.Rotation || rotation == t.Rotation+1 || slices.Contains(n.installed, rotation)
	n.mu.Unlock()
	if !held {
		return nil, fmt.Errorf("rotation %d is not current", rotation)
	}
	kem, err := n.keys.KEM(rotation)
	if err != nil {
		return nil, err
	}
	return wgreg.NewPrivateKey(kem.Seed(), n.linkKey.Private)
}

// updateWireGuard gives the door the new topology.
func (n *Node) updateWireGuard(t *directory.Topology) {
	if n.wg != nil {
		n.wg.Update(t)
	}
}
