package wgnest

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"

	"github.com/nym-go/nym/anonymity/wgtrace"
	"github.com/nym-go/nym/tun"
	"github.com/nym-go/nym/wgreg"
)

// Default sizes, as NymVPN uses them: the outer tunnel's MTU, and the inner
// one's (the user's TUN), 80 bytes less (WireGuard's 32, IPv6 and UDP 48).
const (
	DefaultOuterMTU = 1420
	DefaultInnerMTU = DefaultOuterMTU - nestOverhead
	nestOverhead    = 32 + ipv6HeaderLen + udpHeaderLen
)

// DefaultKeepalive is the persistent keepalive of both peers: it keeps the
// entry's and any NAT's mapping alive while the user is idle.
const DefaultKeepalive = 25 * time.Second

// Peer is a gateway as a WireGuard peer.
type Peer struct {
	PublicKey [32]byte       // its WireGuard key (curve25519)
	PSK       [32]byte       // the pre-shared key registration agreed (ML-KEM)
	Endpoint  netip.AddrPort // its WireGuard UDP endpoint
}

// PeerOf is the gateway a registration answered for, reached at its
// WireGuard endpoint ep.
func PeerOf(reg wgreg.Registration, ep netip.AddrPort) Peer {
	return Peer{PublicKey: reg.GatewayKey, PSK: reg.PSK, Endpoint: ep}
}

// Config is one nested tunnel.
type Config struct {
	// TUN is the user's TUN (nymvpn0), whose MTU at most the outer MTU
	// less 80. New takes it over: Close (or a failed New) closes it.
	TUN tun.Device
	// InnerKey is the private key registered at the exit, OuterKey the
	// one registered at the entry: two keys, so that the gateways hold no
	// common identifier of the client.
	InnerKey, OuterKey [32]byte
	// Entry is the outer tunnel's peer, reached over real UDP; Exit is the
	// inner tunnel's, reached through the entry.
	Entry, Exit Peer
	// OuterV4 and OuterV6 are the client's addresses in the outer tunnel
	// (the entry's registration gave them): the source of the datagrams to
	// the exit. The one of the exit endpoint's family is required.
	OuterV4, OuterV6 netip.Addr
	// Mark is the firewall mark (SO_MARK) of the outer device's UDP
	// sockets; 0 sets none.
	Mark uint32
	// OuterMTU is the outer device's MTU; 0 means DefaultOuterMTU.
	OuterMTU int
	// Keepalive is both peers' persistent keepalive; 0 means
	// DefaultKeepalive, negative none.
	Keepalive time.Duration
	// Logger gets the devices' logs (their chatter at Debug); nil: slog.Default.
	Logger *slog.Logger
	// Trace, if set, records the outer socket's datagrams (the user's
	// link, what an observer of it sees) into an anonymity trace: for
	// measurement only, never in production.
	Trace *wgtrace.Config
}

func (c Config) withDefaults() (Config, error) {
	if c.TUN == nil {
		return c, errors.New("wgnest: no TUN")
	}
	if c.OuterMTU == 0 {
		c.OuterMTU = DefaultOuterMTU
	}
	if c.TUN.MTU()+nestOverhead > c.OuterMTU {
		return c, fmt.Errorf("wgnest: inner MTU %d + %d does not fit the outer MTU %d", c.TUN.MTU(), nestOverhead, c.OuterMTU)
	}
	if c.Keepalive == 0 {
		c.Keepalive = DefaultKeepalive
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	for _, p := range []Peer{c.Entry, c.Exit} {
		if !p.Endpoint.IsValid() || p.Endpoint.Port() == 0 {
			return c, fmt.Errorf("wgnest: bad peer endpoint %v", p.Endpoint)
		}
	}
	src := c.OuterV4
	if c.Exit.Endpoint.Addr().Unmap().Is6() {
		src = c.OuterV6
	}
	if !src.IsValid() {
		return c, fmt.Errorf("wgnest: no outer tunnel address of the family of the exit endpoint %v", c.Exit.Endpoint)
	}
	return c, nil
}

// Tunnel is a running nested tunnel.
type Tunnel struct {
	cfg          Config
	pipe         *pipe
	inner, outer *device.Device
	once         sync.Once

	allowMu sync.Mutex
	allow   [2]AllowanceStatus // by Hop
}

// New brings the nested tunnel up: the inner device first (so that the
// outer device, made second, never has anything to send but what the
// inner one encrypted), then the outer device and its marked sockets. It
// returns at once; WaitHandshake tells when the exit answered.
//
// The sockets are opened in the network namespace of the calling thread.
func New(cfg Config) (_ *Tunnel, err error) {
	cfg, err = cfg.withDefaults()
	if err != nil {
		if cfg.TUN != nil {
			cfg.TUN.Close()
		}
		return nil, err
	}
	var portb [2]byte
	rand.Read(portb[:])
	// The inner bind's port in the outer tunnel: any, the entry keys its
	// relay on the peer and the exit; random like a socket's.
	port := 49152 + binary.BigEndian.Uint16(portb[:])%16384
	t := &Tunnel{cfg: cfg}
	t.pipe = newPipe(cfg.OuterV4.Unmap(), cfg.OuterV6, port, unmapped(cfg.Exit.Endpoint), cfg.OuterMTU)
	defer func() {
		if err != nil {
			t.Close()
		}
	}()

	log := cfg.Logger
	t.inner = device.NewDevice(newTunDevice(cfg.TUN), &innerBind{p: t.pipe}, wgLogger(log, "inner"))
	if err := t.inner.IpcSet(uapiConfig(cfg.InnerKey, 0, cfg.Exit, cfg.Keepalive)); err != nil {
		return nil, fmt.Errorf("wgnest: inner device: %w", err)
	}
	if err := t.inner.Up(); err != nil {
		return nil, fmt.Errorf("wgnest: inner device: %w", err)
	}
	var bind conn.Bind = conn.NewStdNetBind()
	if cfg.Trace != nil {
		bind = wgtrace.Bind(bind, *cfg.Trace)
	}
	t.outer = device.NewDevice(newOuterTun(t.pipe), bind, wgLogger(log, "outer"))
	if err := t.outer.IpcSet(uapiConfig(cfg.OuterKey, cfg.Mark, cfg.Entry, cfg.Keepalive)); err != nil {
		return nil, fmt.Errorf("wgnest: outer device: %w", err)
	}
	if err := t.outer.Up(); err != nil {
		return nil, fmt.Errorf("wgnest: outer device: %w", err)
	}
	return t, nil
}

func unmapped(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// uapiConfig is a device's configuration in wireguard's UAPI text: one
// peer, every address through it (the inner device routes the user's
// traffic to the exit; the outer one carries only the pipe's datagrams).
func uapiConfig(key [32]byte, mark uint32, p Peer, keepalive time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "private_key=%s\n", hex.EncodeToString(key[:]))
	if mark != 0 {
		fmt.Fprintf(&b, "fwmark=%d\n", mark)
	}
	fmt.Fprintf(&b, "replace_peers=true\npublic_key=%s\n", hex.EncodeToString(p.PublicKey[:]))
	fmt.Fprintf(&b, "preshared_key=%s\n", hex.EncodeToString(p.PSK[:]))
	fmt.Fprintf(&b, "endpoint=%s\n", unmapped(p.Endpoint))
	if keepalive > 0 {
		fmt.Fprintf(&b, "persistent_keepalive_interval=%d\n", max(1, int(keepalive/time.Second)))
	}
	b.WriteString("replace_allowed_ips=true\nallowed_ip=0.0.0.0/0\nallowed_ip=::/0\n")
	return b.String()
}

// wgLogger sends a device's logs to log: its errors at Warn, the rest at
// Debug.
func wgLogger(log *slog.Logger, name string) *device.Logger {
	l := log.With("wireguard", name)
	return &device.Logger{
		Verbosef: func(format string, args ...any) {
			if l.Enabled(context.Background(), slog.LevelDebug) {
				l.Debug(fmt.Sprintf(format, args...))
			}
		},
		Errorf: func(format string, args ...any) { l.Warn(fmt.Sprintf(format, args...)) },
	}
}

// Close tears both devices down and closes the TUN. It waits for their
// goroutines.
func (t *Tunnel) Close() error {
	t.once.Do(func() {
		// The pipe first: a device blocked handing a batch to the other
		// would otherwise hold up its own Close.
		t.pipe.close()
		if t.outer != nil {
			t.outer.Close()
		}
		if t.inner != nil {
			t.inner.Close()
		} else {
			t.cfg.TUN.Close()
		}
	})
	return nil
}

// PeerStats is one peer's counters.
type PeerStats struct {
	RxBytes, TxBytes uint64
	// LastHandshake is when the last handshake completed (zero: none yet).
	LastHandshake time.Time
}

// Stats are the nested tunnel's counters.
type Stats struct {
	Inner PeerStats // with the exit: the user's traffic
	Outer PeerStats // with the entry: the inner tunnel's datagrams
	// Dropped counts packets out of the outer tunnel that were not the
	// exit's datagrams to the client.
	Dropped uint64
}

// Stats reads the devices' counters.
func (t *Tunnel) Stats() Stats {
	return Stats{Inner: peerStats(t.inner), Outer: peerStats(t.outer), Dropped: t.pipe.dropped.Load()}
}

func peerStats(d *device.Device) PeerStats {
	var s PeerStats
	text, err := d.IpcGet()
	if err != nil {
		return s
	}
	var sec, nsec int64
	for line := range strings.Lines(text) {
		k, v, _ := strings.Cut(strings.TrimSpace(line), "=")
		var n uint64
		fmt.Sscan(v, &n)
		switch k {
		case "rx_bytes":
			s.RxBytes = n
		case "tx_bytes":
			s.TxBytes = n
		case "last_handshake_time_sec":
			sec = int64(n)
		case "last_handshake_time_nsec":
			nsec = int64(n)
		}
	}
	if sec != 0 || nsec != 0 {
		s.LastHandshake = time.Unix(sec, nsec)
	}
	return s
}

// WaitHandshake returns once the inner tunnel's handshake with the exit
// completed (which needs the outer one's with the entry), or ctx's error.
func (t *Tunnel) WaitHandshake(ctx context.Context) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for t.Stats().Inner.LastHandshake.IsZero() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("wgnest: no handshake with the exit: %w", context.Cause(ctx))
		case <-tick.C:
		}
	}
	return nil
}

// StaleError is Watch's verdict: nothing came back from the exit for
// After. Outer says the entry was silent too (so the entry, or the path to
// it, is the likely fault); otherwise the exit is.
type StaleError struct {
	After time.Duration
	Outer bool
}

func (e *StaleError) Error() string {
	who := "the exit (the entry still answers)"
	if e.Outer {
		who = "the entry"
	}
	return fmt.Sprintf("wgnest: nothing from the exit for %v; blaming %s", e.After, who)
}

// MinStale is the shortest stale time Watch accepts: a probe handshake
// needs WireGuard's rekey timeout (5 s) to be answered.
const MinStale = 6 * time.Second

// Watch returns a *StaleError once nothing came back through the inner
// tunnel for stale (at least MinStale), or ctx's error. While the inner
// tunnel has been silent for a third of that it probes both peers with a
// handshake (WireGuard sends at most one per peer every 5 s), so an idle
// but healthy tunnel always answers in time.
func (t *Tunnel) Watch(ctx context.Context, stale time.Duration) error {
	stale = max(stale, MinStale)
	tick := time.NewTicker(stale / 12)
	defer tick.Stop()
	last := t.Stats()
	innerSeen, outerSeen := time.Now(), time.Now()
	var probing time.Time // when this silence's first probe went out
	for {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-tick.C:
		}
		now, st := time.Now(), t.Stats()
		if st.Inner.RxBytes != last.Inner.RxBytes {
			innerSeen, probing = now, time.Time{}
		}
		if st.Outer.RxBytes != last.Outer.RxBytes {
			outerSeen = now
		}
		last = st
		if now.Sub(innerSeen) >= stale {
			// The entry answers a probe within a round trip: silent
			// since the first, it is the one gone.
			return &StaleError{After: stale, Outer: !outerSeen.After(probing)}
		}
		if now.Sub(innerSeen) >= stale/3 {
			if probing.IsZero() {
				probing = now
			}
			probe(t.inner, t.cfg.Exit.PublicKey)
			probe(t.outer, t.cfg.Entry.PublicKey)
		}
	}
}

func probe(d *device.Device, key [32]byte) {
	if p := d.LookupPeer(device.NoisePublicKey(key)); p != nil {
		p.SendHandshakeInitiation(false)
	}
}
