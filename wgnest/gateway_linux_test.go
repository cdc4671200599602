package wgnest

import (
	"context"
	"crypto/ed25519"
	"crypto/hpke"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nym-go/nym/internal/leakcheck"
	"github.com/nym-go/nym/internal/netnstest"
	"github.com/nym-go/nym/internal/poll"
	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/link"
	"github.com/nym-go/nym/wggate"
	"github.com/nym-go/nym/wgreg"
)

const gwRotation = 3

// gwKeys are one gateway's keys, as its node holds them.
type gwKeys struct {
	identity directory.Key
	link     link.KeyPair
	hpke     hpke.PrivateKey
	kemPub   []byte
}

func newGWKeys(t testing.TB) *gwKeys {
	pub, _, _ := ed25519.GenerateKey(nil)
	lk, err := link.GenerateKeyPair(nil)
	if err != nil {
		t.Fatal(err)
	}
	kem, err := link.GenerateKEMKey()
	if err != nil {
		t.Fatal(err)
	}
	lk.KEMKeys = link.NewKEMKeyring(kem)
	priv, err := wgreg.NewPrivateKey(kem.Seed(), lk.Private)
	if err != nil {
		t.Fatal(err)
	}
	return &gwKeys{identity: directory.Key(pub), link: lk, hpke: priv, kemPub: kem.PublicKey()}
}

func (k *gwKeys) node(wg netip.AddrPort, entry bool) directory.Node {
	return directory.Node{
		Identity:     k.identity,
		NoiseKey:     directory.Key(k.link.Public),
		KEMKeys:      []directory.RotationKEMKey{{Rotation: gwRotation, Key: k.kemPub}},
		WGAddr:       wg.String(),
		MixnetAddr:   netip.AddrPortFrom(wg.Addr(), 1789).String(),
		HTTPAddr:     netip.AddrPortFrom(wg.Addr(), 8080).String(),
		Capabilities: directory.Capabilities{Entry: entry, Exit: !entry},
	}
}

// gwNet is the gateways' real side (wggate's entry relay and exit device)
// in the gateways' namespace, with the client's registrations done.
type gwNet struct {
	*testNet
	log                 *slog.Logger
	entry, exit         *wggate.Gateway
	entryNode, exitNode directory.Node
	innerKey, outerKey  keypair
	regE, regX          wgreg.Registration
	dial                func(ctx context.Context, network, addr string) (net.Conn, error)
	clientTUN           string
}

// startGateways starts an entry and an exit in their own namespace
// (configured further by mutate, when not nil), registers a client at the
// entry directly and at the exit through it with opts, and brings the
// nested tunnel up in the client's namespace, routing everything but the
// LAN into it.
func startGateways(t *testing.T, mutate func(*wggate.Config), opts wgreg.Options) *gwNet {
	n, sfx := newNamespaces(t)
	g := &gwNet{testNet: n, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if testing.Verbose() {
		g.log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	log := g.log
	ek, xk := newGWKeys(t), newGWKeys(t)
	exitTUN := "wgx" + sfx
	err := netnstest.DoNamed(n.gw, func() (err error) {
		ecfg := wggate.Config{
			Role: wgreg.RoleEntry, Identity: ek.identity, Link: ek.link, Listen: netip.AddrPortFrom(gwLAN, 0), Logger: log,
			HPKEKey: func(uint64) (hpke.PrivateKey, error) { return ek.hpke, nil },
			// The relay opens its sockets on the device's goroutines,
			// which do not run in this namespace.
			DialUDP: func(ep netip.AddrPort) (c *net.UDPConn, err error) {
				err = netnstest.DoNamed(n.gw, func() (err error) {
					c, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(ep))
					return err
				})
				return c, err
			},
			DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
				err = netnstest.DoNamed(n.gw, func() (err error) {
					c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
					return err
				})
				return c, err
			},
		}
		xcfg := wggate.Config{
			Role: wgreg.RoleExit, Identity: xk.identity, Link: xk.link, Listen: netip.AddrPortFrom(gwLAN, 0), Logger: log,
			HPKEKey: func(uint64) (hpke.PrivateKey, error) { return xk.hpke, nil },
			TUN:     exitTUN,
		}
		if mutate != nil {
			mutate(&ecfg)
			mutate(&xcfg)
		}
		if g.entry, err = wggate.New(ecfg); err != nil {
			return err
		}
		g.exit, err = wggate.New(xcfg)
		return err
	})
	if g.entry != nil {
		t.Cleanup(func() { g.entry.Close() })
	}
	if g.exit != nil {
		t.Cleanup(func() { g.exit.Close() })
	}
	if err != nil {
		t.Fatal(err)
	}
	g.entryNode = ek.node(netip.AddrPortFrom(gwLAN, g.entry.Port()), true)
	g.exitNode = xk.node(netip.AddrPortFrom(gwLAN, g.exit.Port()), false)
	top := &directory.Topology{Rotation: gwRotation, Entry: []directory.Node{g.entryNode}, Exit: []directory.Node{g.exitNode}}
	g.entry.Update(top)
	g.exit.Update(top)

	g.innerKey, g.outerKey = newKey(t), newKey(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// The registration link is dialled from the client's namespace.
	g.dial = func(ctx context.Context, network, addr string) (c net.Conn, err error) {
		err = netnstest.DoNamed(n.client, func() (err error) {
			c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
	opts.Rotation, opts.DialContext, opts.Logger = gwRotation, g.dial, log
	var sess *wgreg.Session
	g.regE, sess, err = wgreg.RegisterEntry(ctx, g.entryNode, g.outerKey.pub, opts)
	if err != nil {
		t.Fatal(err)
	}
	g.regX, err = sess.RegisterExit(ctx, g.exitNode, g.innerKey.pub)
	sess.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("entry gave %v %v, exit gave %v %v", g.regE.AddrV4, g.regE.AddrV6, g.regX.AddrV4, g.regX.AddrV6)

	g.clientTUN = "wgt" + sfx
	n.startNest(t, g.clientTUN, Config{
		InnerKey: g.innerKey.priv, OuterKey: g.outerKey.priv,
		Entry:   Peer{PublicKey: g.regE.GatewayKey, PSK: g.regE.PSK, Endpoint: netip.AddrPortFrom(gwLAN, g.entry.Port())},
		Exit:    Peer{PublicKey: g.regX.GatewayKey, PSK: g.regX.PSK, Endpoint: netip.AddrPortFrom(gwLAN, g.exit.Port())},
		OuterV4: g.regE.AddrV4.Addr(), OuterV6: g.regE.AddrV6.Addr(), Mark: testMark, Logger: log,
	}, g.regX.AddrV4, g.regX.AddrV6)
	// As nymvpn's routes do it, more simply: everything but the LAN (the
	// gateways) into the tunnel.
	run(t, "ip", "-n", n.client, "route", "add", "default", "dev", g.clientTUN)
	run(t, "ip", "-n", n.client, "-6", "route", "add", "default", "dev", g.clientTUN)
	if err := n.nest.WaitHandshake(ctx); err != nil {
		t.Fatal(err)
	}
	return g
}

// TestThroughTheGateways: the client side (wgreg's registrations, wgnest)
// against the gateways' real side (wggate's entry relay and exit device),
// each in its network namespace: the client registers at the entry
// directly and at the exit through it, and 1 MiB crosses the nested tunnel
// to a server on the exit's WireGuard TUN address.
func TestThroughTheGateways(t *testing.T) {
	leakcheck.Check(t)
	g := startGateways(t, nil, wgreg.Options{})
	// The exit's own address on its TUN: the first of its range.
	g.transfer(t, wggate.DefaultExitRangeV4.Addr().Next(), 1<<20)
	if g.regX.AddrV6.IsValid() {
		g.transfer(t, wggate.DefaultExitRangeV6.Addr().Next(), 64<<10)
	}
	if st := g.nest.Stats(); st.Dropped != 0 {
		t.Errorf("dropped %d packets from the outer tunnel", st.Dropped)
	}
	if a := g.regE.Allowance + g.regX.Allowance; a != 0 {
		t.Errorf("unmetered gateways answered an allowance of %d", a)
	}
}

// oneTimeSpends stands in for the ticket check: a spend names its role and
// passes once (the ticket package's spent set does the same for real
// tickets, tested there).
type oneTimeSpends struct {
	mu   sync.Mutex
	seen map[string]bool
	n    [3]int // accepted, by role
}

func (s *oneTimeSpends) VerifySpend(_ context.Context, role wgreg.Role, spend []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !strings.HasPrefix(string(spend), role.String()+" ") || s.seen[string(spend)] {
		return errors.New("ticket refused: wrong type or spent")
	}
	if s.seen == nil {
		s.seen = make(map[string]bool)
	}
	s.seen[string(spend)] = true
	s.n[role]++
	return nil
}

func (s *oneTimeSpends) accepted(role wgreg.Role) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n[role]
}

// A transfer of several times the quota one ticket buys, at both the entry
// and the exit: the client tops up each hop's allowance before it runs
// out (registering the same keys again with new tickets, the exit's
// through the entry, and taking the new PSKs), so neither gateway removes
// its peer and the bytes keep flowing; afterwards fresh handshakes with
// both gateways pass, under the PSKs of the last top-ups. Without the
// top-up the gateways removed the peers after the first ticket's bytes and
// the transfer stalled.
func TestTopUpBeforeQuotaRunsOut(t *testing.T) {
	leakcheck.Check(t)
	const quota, size = 2 << 20, 16 << 20
	spends := &oneTimeSpends{}
	var next atomic.Int32
	spend := func(role wgreg.Role) []byte {
		return fmt.Appendf(nil, "%s %d", role, next.Add(1))
	}
	g := startGateways(t, func(c *wggate.Config) {
		c.RequireTickets, c.Tickets, c.TicketQuota = true, spends, quota
	}, wgreg.Options{EntrySpend: spend(wgreg.RoleEntry), ExitSpend: spend(wgreg.RoleExit)})
	if g.regE.Allowance != quota || g.regX.Allowance != quota {
		t.Fatalf("allowances %d at the entry, %d at the exit; want %d each", g.regE.Allowance, g.regX.Allowance, quota)
	}
	// What nymvpn's fast mode does for each hop: a new registration link
	// to the entry, the same key, one new ticket.
	topUp := func(ctx context.Context, hop Hop) (Grant, error) {
		opts := wgreg.Options{Rotation: gwRotation, DialContext: g.dial, Logger: g.log}
		if hop == HopEntry {
			opts.EntrySpend = spend(wgreg.RoleEntry)
		} else {
			opts.ExitSpend = spend(wgreg.RoleExit)
		}
		s, err := wgreg.Dial(ctx, g.entryNode, opts)
		if err != nil {
			return Grant{}, err
		}
		defer s.Close()
		var reg wgreg.Registration
		if hop == HopEntry {
			reg, err = s.RegisterEntry(ctx, g.outerKey.pub)
		} else {
			reg, err = s.RegisterExit(ctx, g.exitNode, g.innerKey.pub)
		}
		return GrantOf(reg), err
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() {
		g.nest.KeepAllowance(ctx, HopEntry, GrantOf(g.regE), topUp)
	})
	wg.Go(func() { g.nest.KeepAllowance(ctx, HopExit, GrantOf(g.regX), topUp) })

	// Paced to 1 MiB/s: the keeper reads the counters every 500 ms and
	// tops up one 2 MiB ticket at a time, so it keeps ahead of up to
	// 4 MiB/s (a real ticket buys 500 MB: 1 GB/s). Unpaced, a quiet host
	// moved the test's tiny quota within one check (failed at load ~1).
	g.transferAt(t, wggate.DefaultExitRangeV4.Addr().Next(), size, 1<<20)
	if e, x := g.entry.QuotaRemovals(), g.exit.QuotaRemovals(); e != 0 || x != 0 {
		t.Fatalf("peers removed for running out of quota: %d at the entry, %d at the exit", e, x)
	}
	if g.entry.Peers() != 1 || g.exit.Peers() != 1 {
		t.Fatalf("%d peers at the entry, %d at the exit; want 1 each", g.entry.Peers(), g.exit.Peers())
	}
	// 16 MiB up and its acknowledgements cannot pass on fewer than 8
	// tickets of 2 MiB per hop.
	for _, hop := range []Hop{HopEntry, HopExit} {
		st := g.nest.Allowance(hop)
		if !st.Metered || st.TopUps < size/quota-1 || st.Err != nil {
			t.Errorf("%s: %+v; want metered, at least %d top-ups, no error", hop, st, size/quota-1)
		}
	}
	if e, x := spends.accepted(wgreg.RoleEntry), spends.accepted(wgreg.RoleExit); e < size/quota || x < size/quota {
		t.Errorf("tickets taken: %d at the entry, %d at the exit; want at least %d each", e, x, size/quota)
	}
	// The PSKs on both sides agree: new handshakes with both pass.
	cancel()
	wg.Wait()
	before := g.nest.Stats()
	poll.Until(t, time.Minute, "fresh handshakes with the entry and the exit", func() bool {
		// WireGuard sends at most one initiation per peer every 5 s.
		probe(g.nest.outer, g.regE.GatewayKey)
		probe(g.nest.inner, g.regX.GatewayKey)
		st := g.nest.Stats()
		return st.Outer.LastHandshake.After(before.Outer.LastHandshake) && st.Inner.LastHandshake.After(before.Inner.LastHandshake)
	})
	g.transfer(t, wggate.DefaultExitRangeV4.Addr().Next(), 64<<10)
}

// A top-up the gateway refuses (here: a ticket already spent) is kept as
// the hop's error with the gateway's words and retried; once the allowance
// is used up the gateway removes the peer and Watch finds the tunnel stale,
// blaming the entry, so the client rebuilds it (nymvpn's kill switch stays
// on throughout).
func TestTopUpRefused(t *testing.T) {
	leakcheck.Check(t)
	const quota = 1 << 20
	spends := &oneTimeSpends{}
	g := startGateways(t, func(c *wggate.Config) {
		c.RequireTickets, c.Tickets, c.TicketQuota = true, spends, quota
	}, wgreg.Options{EntrySpend: []byte("entry 1"), ExitSpend: []byte("exit 1")})
	spentAgain := func(ctx context.Context, hop Hop) (Grant, error) {
		s, err := wgreg.Dial(ctx, g.entryNode, wgreg.Options{Rotation: gwRotation, DialContext: g.dial, Logger: g.log, EntrySpend: []byte("entry 1")})
		if err != nil {
			return Grant{}, err
		}
		defer s.Close()
		reg, err := s.RegisterEntry(ctx, g.outerKey.pub)
		return GrantOf(reg), err
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() {
		g.nest.KeepAllowance(ctx, HopEntry, GrantOf(g.regE), spentAgain)
	})
	// Traffic until the entry drops the peer: datagrams to the exit.
	var c net.Conn
	if err := netnstest.DoNamed(g.client, func() (err error) {
		c, err = net.Dial("udp", netip.AddrPortFrom(wggate.DefaultExitRangeV4.Addr().Next(), 9).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	wg.Go(func() {
		b := make([]byte, 1200)
		for ctx.Err() == nil && g.entry.QuotaRemovals() == 0 {
			c.Write(b)
		}
	})
	poll.Until(t, time.Minute, "the entry to remove the peer out of allowance", func() bool { return g.entry.QuotaRemovals() == 1 })
	// On a quiet host the datagrams use the allowance up before the
	// keeper's first check; its refused top-up may come after the removal.
	poll.Until(t, time.Minute, "the keeper's refused top-up", func() bool { return g.nest.Allowance(HopEntry).Err != nil })
	st := g.nest.Allowance(HopEntry)
	if st.Err == nil || !strings.Contains(st.Err.Error(), "ticket refused") || st.TopUps != 0 {
		t.Fatalf("entry allowance %+v; want the gateway's refusal as the error, no top-up", st)
	}
	var se *StaleError
	if err := g.nest.Watch(ctx, MinStale); !errors.As(err, &se) || !se.Outer {
		t.Fatalf("Watch after the peer's removal: %v; want stale, blaming the entry", err)
	}
}
