package wggate

import (
	"context"
	"crypto/hpke"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/curve25519"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	wgtun "golang.zx2c4.com/wireguard/tun"

	"github.com/nym-go/nym/anonymity"
	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/link"
	"github.com/nym-go/nym/platform"
	"github.com/nym-go/nym/wgreg"
)

// Defaults for zero Config fields.
const (
	DefaultPeerTimeout   = 3 * time.Minute
	DefaultMaxFlows      = 16
	DefaultMaxPeersPerIP = 16
	DefaultEntryMTU      = 1420
	DefaultExitMTU       = 1340
	DefaultExitTUN       = "nymwg0"
	DefaultRelayTimeout  = 10 * time.Second
	DefaultMaxClockSkew  = 2 * time.Minute
	DefaultMaxNonces     = 1 << 20
	DefaultMaxRegConns   = 1024
	// DefaultMaxRelayHandshakes: an exit's registration handshakes at
	// once from one gateway's address. Each relayed registration is a
	// link of its own from the entry, so this is how many clients one
	// entry may register with this exit at the same moment; 64 covers a
	// busy entry's bursts while sixteen entries at it still leave most of
	// DefaultMaxRegConns to the rest.
	DefaultMaxRelayHandshakes = 64
	defaultInjectQueue        = 1024
	maxRegistrationsConn      = 16 // per registration link; a client needs two
)

// Default client ranges. They differ from the IP packet router's (10.0.0.0/16,
// fc00::/112), so the exit's two doors never hand out the same address.
var (
	DefaultEntryRangeV4 = netip.MustParsePrefix("10.2.0.0/16")
	DefaultEntryRangeV6 = netip.MustParsePrefix("fc00::2:0/112")
	DefaultExitRangeV4  = netip.MustParsePrefix("10.1.0.0/16")
	DefaultExitRangeV6  = netip.MustParsePrefix("fc00::1:0/112")
)

// TicketVerifier checks a ticket Spend presented with a registration (type
// wireguard-entry or wireguard-exit by role). The ticket package provides
// one; an error refuses the registration.
type TicketVerifier interface {
	VerifySpend(ctx context.Context, role wgreg.Role, spend []byte) error
}

// Config configures a Gateway.
type Config struct {
	// Role is wgreg.RoleEntry or wgreg.RoleExit.
	Role wgreg.Role
	// Identity is the node's identity key, bound into the sealing.
	Identity directory.Key
	// Link is the node's Noise key pair with its KEM keys: the registration
	// link server's key, and the entry's key when it relays to exits.
	Link link.KeyPair
	// HPKEKey returns the node's HPKE private key for a key rotation (its
	// ML-KEM key of that rotation with its Noise key, see
	// wgreg.NewPrivateKey), or an error for a rotation it does not hold.
	HPKEKey func(rotation uint64) (hpke.PrivateKey, error)
	// Listen is the IP:port of the WireGuard door: UDP for WireGuard, TCP
	// for registration. A specific address binds both to it, so WireGuard
	// answers leave from the address the peer reached; the unspecified
	// address listens on every address. Port 0 picks one.
	Listen netip.AddrPort
	// RangeV4 and RangeV6 are the client ranges; the gateway takes the first
	// address of each. Defaults by role; RangeV6 may be turned off with
	// NoIPv6.
	RangeV4, RangeV6 netip.Prefix
	NoIPv6           bool
	// PeerTimeout removes a peer without a handshake for that long.
	// Default 3 minutes.
	PeerTimeout time.Duration
	// MaxFlows bounds an entry's relay sockets per client. Default 16.
	MaxFlows int
	// MaxPeersPerIP bounds the peers registered from one client address
	// (IPv4, or IPv6 /64) at an entry, so one host cannot take the address
	// pool. Default 16. (An exit sees only entries' addresses.)
	MaxPeersPerIP int
	// MTU of the device. Default 1420 (entry), 1340 (exit).
	MTU int
	// TUN names the exit's kernel TUN. Default nymwg0.
	TUN string
	// RequireTickets refuses registrations without a valid ticket Spend;
	// it needs Tickets.
	RequireTickets bool
	Tickets        TicketVerifier
	// TicketQuota is the bytes (both directions, as the device counts
	// them) one registration's ticket buys through its peer; the peer is
	// removed once it has used them. 0: peers are not metered.
	TicketQuota uint64
	// MaxClockSkew is how far a request's time may be from ours. Default
	// 2 minutes; nonces are kept twice as long.
	MaxClockSkew time.Duration
	// MaxNonces bounds the nonces remembered; when full, registrations are
	// refused until old ones age out. Default 1<<20.
	MaxNonces int
	// MaxRegConns bounds registration links at once. Default 1024.
	MaxRegConns int
	// MaxRelayHandshakes bounds, at an exit, the registration handshakes
	// at once from the address of a gateway of the consensus (its relayed
	// registrations, each on a link of its own). Any other address keeps
	// link.DefaultMaxHandshakesPerIP: a flood guard, meant for one client.
	// Default DefaultMaxRelayHandshakes.
	MaxRelayHandshakes int
	// RelayTimeout bounds an entry's relay of one registration to an exit.
	RelayTimeout time.Duration
	// DialContext dials exits' registration ports; nil uses a net.Dialer.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// DialUDP opens the entry's relay socket to an exit's endpoint; nil
	// uses net.DialUDP. Tests in network namespaces replace it (the relay
	// opens sockets on the device's goroutines).
	DialUDP func(exit netip.AddrPort) (*net.UDPConn, error)
	// FlushConntrack, on an exit, deletes the connection tracking entries
	// of a removed peer's addresses before they go to the next client, so
	// no late reply of the old flows reaches it. Nil is
	// platform.FlushConntrack (the calling namespace); tests in namespaces
	// replace it (expiry runs on the gateway's own goroutine).
	FlushConntrack func(addrs ...netip.Addr) (int, error)
	// Now is the clock; nil is time.Now.
	Now func() time.Time
	// Logger; nil is slog.Default().
	Logger *slog.Logger
	// Registerer receives the metrics; nil keeps them private.
	Registerer prometheus.Registerer
	// Trace, if set, records the door's traffic for the anonymity
	// measurement (the node's trace_file; see trace.go). Never in
	// production.
	Trace *anonymity.Recorder
	// ExitDevice, if set, is an exit's TUN in place of the kernel TUN it
	// would create: an in-process internet (a userspace stack) with none
	// of the exit networking behind it (no NAT, no policy). For tests and
	// the in-process anonymity measurement; the node never sets it.
	ExitDevice wgtun.Device
}

func (c Config) withDefaults() (Config, error) {
	if c.Role != wgreg.RoleEntry && c.Role != wgreg.RoleExit {
		return c, fmt.Errorf("wggate: role %v", c.Role)
	}
	if c.Identity.IsZero() || c.HPKEKey == nil || c.Link.Public == [32]byte{} {
		return c, errors.New("wggate: identity, link key and HPKE keys are required")
	}
	if !c.Listen.IsValid() {
		return c, errors.New("wggate: no listen address")
	}
	if !c.RangeV4.IsValid() {
		c.RangeV4 = map[wgreg.Role]netip.Prefix{wgreg.RoleEntry: DefaultEntryRangeV4, wgreg.RoleExit: DefaultExitRangeV4}[c.Role]
	}
	if c.NoIPv6 {
		c.RangeV6 = netip.Prefix{}
	} else if !c.RangeV6.IsValid() {
		c.RangeV6 = map[wgreg.Role]netip.Prefix{wgreg.RoleEntry: DefaultEntryRangeV6, wgreg.RoleExit: DefaultExitRangeV6}[c.Role]
	}
	if c.PeerTimeout < 0 || c.MaxFlows < 0 || c.MaxPeersPerIP < 0 || c.MTU < 0 || c.MaxClockSkew < 0 || c.MaxNonces < 0 || c.MaxRegConns < 0 || c.RelayTimeout < 0 || c.MaxRelayHandshakes < 0 {
		return c, errors.New("wggate: negative limit")
	}
	if c.PeerTimeout == 0 {
		c.PeerTimeout = DefaultPeerTimeout
	}
	if c.MaxFlows == 0 {
		c.MaxFlows = DefaultMaxFlows
	}
	if c.MaxPeersPerIP == 0 {
		c.MaxPeersPerIP = DefaultMaxPeersPerIP
	}
	if c.MTU == 0 {
		c.MTU = map[wgreg.Role]int{wgreg.RoleEntry: DefaultEntryMTU, wgreg.RoleExit: DefaultExitMTU}[c.Role]
	}
	if c.MTU < 1280 || c.MTU > 65535 {
		return c, fmt.Errorf("wggate: MTU %d outside 1280..65535", c.MTU)
	}
	if c.TUN == "" {
		c.TUN = DefaultExitTUN
	}
	if c.RequireTickets && c.Tickets == nil {
		return c, errors.New("wggate: tickets required but no verifier")
	}
	if c.MaxClockSkew == 0 {
		c.MaxClockSkew = DefaultMaxClockSkew
	}
	if c.MaxNonces == 0 {
		c.MaxNonces = DefaultMaxNonces
	}
	if c.MaxRegConns == 0 {
		c.MaxRegConns = DefaultMaxRegConns
	}
	if c.RelayTimeout == 0 {
		c.RelayTimeout = DefaultRelayTimeout
	}
	if c.MaxRelayHandshakes == 0 {
		c.MaxRelayHandshakes = DefaultMaxRelayHandshakes
	}
	if c.FlushConntrack == nil {
		c.FlushConntrack = platform.FlushConntrack
	}
	if c.DialContext == nil {
		var d net.Dialer
		c.DialContext = d.DialContext
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// Gateway is one gateway's WireGuard door: the device, its peers, the
// entry's relay or the exit's TUN, and the registration server.
type Gateway struct {
	cfg      Config
	log      *slog.Logger
	m        *metrics
	dev      *device.Device
	pubKey   [32]byte
	peers    *peerTable
	relay    *relay       // entry only
	ctun     *chanTUN     // entry only
	ktun     wgtun.Device // exit only
	topo     atomic.Pointer[directory.Topology]
	prevTopo atomic.Pointer[directory.Topology] // the epoch before topo's
	// gatewaySrcs are the sources (link.SourceOf) of the gateways of topo
	// and prevTopo, from their announced addresses.
	gatewaySrcs atomic.Pointer[map[netip.Prefix]bool]
	nonces      *nonceCache
	quota       *quotas
	regLn       net.Listener
	port        uint16

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// New starts a gateway's WireGuard door: the device on cfg.Listen's port,
// the registration server, and the peer expiry.
func New(cfg Config) (_ *Gateway, err error) {
	cfg, err = cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	g := &Gateway{cfg: cfg, log: cfg.Logger.With("component", "wireguard", "role", cfg.Role.String())}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			g.Close()
		}
	}()
	pool, err := newAddrPool(cfg.RangeV4, cfg.RangeV6)
	if err != nil {
		return nil, err
	}
	if g.m, err = newMetrics(cfg.Registerer, cfg.Role.String()); err != nil {
		return nil, fmt.Errorf("wggate: metrics: %w", err)
	}
	g.nonces = newNonceCache(cfg.MaxNonces, 2*cfg.MaxClockSkew)

	var tdev wgtun.Device
	if cfg.Role == wgreg.RoleEntry {
		var r *relay
		g.ctun = newChanTUN(cfg.MTU, defaultInjectQueue, func(bufs [][]byte, offset int) { r.fromClients(bufs, offset) })
		tdev = g.ctun
		r = newRelay(g.ctx, g.ctun, func(a netip.Addr) (peerKey, bool) { return g.peers.owner(a) }, cfg.PeerTimeout, cfg.MaxFlows, g.m, g.log)
		if cfg.DialUDP != nil {
			r.dial = cfg.DialUDP
		}
		g.relay = r
	} else if cfg.ExitDevice != nil {
		g.ktun, tdev = cfg.ExitDevice, cfg.ExitDevice
	} else {
		gw4, gw6 := pool.gateway()
		if g.ktun, err = createExitTUN(cfg.TUN, cfg.MTU, netip.PrefixFrom(gw4, cfg.RangeV4.Bits()), prefixIf(gw6, cfg.RangeV6), g.log); err != nil {
			return nil, err
		}
		tdev = g.ktun
	}
	// On one address, a socket bound to it (see addrBind); on every
	// address, wireguard-go's.
	var b conn.Bind = conn.NewStdNetBind()
	if !cfg.Listen.Addr().IsUnspecified() {
		b = newAddrBind(cfg.Listen.Addr(), g.log)
	}
	tdev, bind := g.traced(tdev, b)
	g.dev = device.NewDevice(tdev, bind, wgLogger(g.log))
	var priv [32]byte
	rand.Read(priv[:])
	pub, err := curve25519.X25519(priv[:], curve25519.Basepoint)
	if err != nil {
		return nil, err
	}
	g.pubKey = [32]byte(pub)
	if err := g.dev.IpcSet(fmt.Sprintf("private_key=%s\n", hex.EncodeToString(priv[:]))); err != nil {
		return nil, fmt.Errorf("wggate: configuring the device: %w", err)
	}
	if err := g.listen(); err != nil {
		return nil, err
	}
	g.quota = newQuotas()
	g.peers = newPeerTable(g.dev, pool, cfg.PeerTimeout, func(pk peerKey, p *peer) {
		g.quota.drop(pk)
		if g.relay != nil {
			g.relay.closePeer(pk)
		}
		if cfg.Role == wgreg.RoleExit {
			addrs := []netip.Addr{p.v4}
			if p.v6.IsValid() {
				addrs = append(addrs, p.v6)
			}
			if _, err := cfg.FlushConntrack(addrs...); err != nil {
				g.log.Warn("flushing a removed peer's connections", "err", err)
			}
		}
	})
	if err := g.startServer(); err != nil {
		return nil, err
	}
	g.wg.Add(1)
	go g.janitor()
	if cfg.TicketQuota > 0 {
		g.wg.Add(1)
		go g.meter()
	}
	g.log.Info("wireguard door up", "port", g.port, "key", hex.EncodeToString(g.pubKey[:8]), "range_v4", cfg.RangeV4, "range_v6", cfg.RangeV6)
	return g, nil
}

func prefixIf(a netip.Addr, p netip.Prefix) netip.Prefix {
	if !a.IsValid() {
		return netip.Prefix{}
	}
	return netip.PrefixFrom(a, p.Bits())
}

// listen opens the door's two sides on one port, the registration TCP
// listener and the device's UDP port, and brings the device up. With port
// 0, a port free for both is looked for.
func (g *Gateway) listen() error {
	var err error
	for range 16 {
		if g.regLn, err = net.Listen("tcp", g.cfg.Listen.String()); err != nil {
			return fmt.Errorf("wggate: registration listener: %w", err)
		}
		g.port = uint16(g.regLn.Addr().(*net.TCPAddr).Port)
		if err = g.dev.IpcSet(fmt.Sprintf("listen_port=%d\n", g.port)); err == nil {
			if err = g.dev.Up(); err == nil {
				return nil
			}
		}
		g.regLn.Close()
		g.regLn = nil
		if g.cfg.Listen.Port() != 0 {
			break
		}
	}
	return fmt.Errorf("wggate: WireGuard UDP port: %w", err)
}

// Port is the WireGuard UDP port (and the registration TCP port).
func (g *Gateway) Port() uint16 { return g.port }

// PublicKey is the gateway's WireGuard public key.
func (g *Gateway) PublicKey() [32]byte { return g.pubKey }

// Peers is how many peers are registered.
func (g *Gateway) Peers() int { return g.peers.len() }

// Update gives the gateway the current topology: the entry relays only to
// its exits' WireGuard endpoints (and, for the epoch after, the previous
// epoch's, so a client's tunnel does not break at the boundary) and relays
// registrations only to its exits; the exit accepts relayed registrations
// only from its gateways (the previous epoch's too).
func (g *Gateway) Update(t *directory.Topology) {
	if t == nil {
		return
	}
	if old := g.topo.Load(); old != nil && old.Epoch < t.Epoch {
		g.prevTopo.Store(old)
	}
	g.topo.Store(t)
	srcs := make(map[netip.Prefix]bool)
	for _, tt := range []*directory.Topology{t, g.prevTopo.Load()} {
		if tt == nil {
			continue
		}
		for _, group := range [][]directory.Node{tt.Entry, tt.Exit} {
			for i := range group {
				for _, a := range []string{group[i].WGAddr, group[i].MixnetAddr} {
					if ap, err := netip.ParseAddrPort(a); err == nil && !ap.Addr().IsUnspecified() {
						srcs[link.SourceOf(net.TCPAddrFromAddrPort(ap))] = true
					}
				}
			}
		}
	}
	g.gatewaySrcs.Store(&srcs)
	if g.relay != nil {
		var eps []netip.AddrPort
		for _, tt := range []*directory.Topology{t, g.prevTopo.Load()} {
			if tt == nil {
				continue
			}
			for i := range tt.Exit {
				if ep, ok := tt.Exit[i].WGAddrPort(); ok {
					eps = append(eps, ep)
				}
			}
		}
		g.relay.SetExits(eps)
	}
}

// janitor expires idle peers and relay sockets.
func (g *Gateway) janitor() {
	defer g.wg.Done()
	every := max(g.cfg.PeerTimeout/8, 50*time.Millisecond)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-g.ctx.Done():
			return
		case <-tick.C:
		}
		now := g.cfg.Now()
		n, err := g.peers.expire(now)
		if err != nil {
			g.log.Warn("peer expiry", "err", err)
		}
		if n > 0 {
			g.m.peers.Set(float64(g.peers.len()))
			g.m.expired.Add(float64(n))
			g.log.Debug("peers expired", "count", n)
		}
		if g.relay != nil {
			g.relay.expire(now.Add(-g.cfg.PeerTimeout))
		}
		g.nonces.prune(now)
	}
}

// Close stops everything the gateway started.
func (g *Gateway) Close() error {
	g.once.Do(func() {
		g.cancel()
		if g.regLn != nil {
			g.regLn.Close()
		}
		if g.relay != nil {
			g.relay.Close()
		}
		if g.dev != nil {
			g.dev.Close() // closes the tun too
		} else if g.ktun != nil {
			g.ktun.Close()
		}
		g.wg.Wait()
		if g.m != nil {
			g.m.unregister()
		}
	})
	return nil
}

// wgLogger sends wireguard-go's logs to slog: errors as warnings (they are
// mostly peers' garbage), the rest at debug.
func wgLogger(log *slog.Logger) *device.Logger {
	return &device.Logger{
		Verbosef: func(format string, args ...any) { log.Debug(fmt.Sprintf(format, args...)) },
		Errorf:   func(format string, args ...any) { log.Warn(fmt.Sprintf(format, args...)) },
	}
}
