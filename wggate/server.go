package wggate

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/link"
	"github.com/nym-go/nym/wgreg"
)

// regIdleTimeout closes a registration link that has been silent this long:
// a client needs it for a few seconds.
const regIdleTimeout = 30 * time.Second

// startServer serves registration links on the TCP side of the door.
func (g *Gateway) startServer() error {
	var counts sync.Map // *link.Conn → *atomic.Int32, messages handled
	srv, err := link.NewServer(link.ServerConfig{
		Config: link.Config{
			Static: g.cfg.Link,
			Handler: func(c *link.Conn, f link.Frame) error {
				v, _ := counts.LoadOrStore(c, new(atomic.Int32))
				if v.(*atomic.Int32).Add(1) > maxRegistrationsConn {
					return errors.New("too many registration messages on one link")
				}
				return g.handle(c, f)
			},
			OnClose:     func(c *link.Conn, _ error) { counts.Delete(c) },
			QueueLen:    maxRegistrationsConn,
			IdleTimeout: regIdleTimeout,
			Logger:      g.log,
		},
		MaxConns:          g.cfg.MaxRegConns,
		MaxHandshakesFrom: g.maxHandshakesFrom,
	})
	if err != nil {
		return fmt.Errorf("wggate: registration server: %w", err)
	}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if err := srv.Serve(g.ctx, g.regLn); err != nil && g.ctx.Err() == nil {
			g.log.Warn("registration server stopped", "err", err)
		}
	}()
	return nil
}

// handle answers one registration message, on the link's reader goroutine.
func (g *Gateway) handle(c *link.Conn, f link.Frame) error {
	if f.Kind != link.KindClient {
		return fmt.Errorf("frame of kind %s on a registration link", f.Kind)
	}
	msg, err := wgreg.Parse(f.Payload)
	if err != nil {
		g.m.registrations.WithLabelValues(regMalformed).Inc()
		g.send(c, &wgreg.Error{Code: wgreg.ErrCodeMalformed, Text: err.Error()})
		return nil
	}
	switch m := msg.(type) {
	case *wgreg.Register:
		if g.cfg.Role != wgreg.RoleEntry {
			g.m.registrations.WithLabelValues(regRefused).Inc()
			g.send(c, &wgreg.Error{ID: m.ID, Code: wgreg.ErrCodeRefused, Text: "an exit takes registrations only through an entry"})
			return nil
		}
		g.answer(c, m.ID, m.Sealed, link.SourceOf(c.RemoteAddr()))
	case *wgreg.Forward:
		if g.cfg.Role != wgreg.RoleExit || !g.isGateway(c.RemoteStatic()) {
			g.m.registrations.WithLabelValues(regRefused).Inc()
			g.send(c, &wgreg.Error{ID: m.ID, Code: wgreg.ErrCodeRefused, Text: "forwarded registrations are taken only from the consensus's gateways, by exits"})
			return nil
		}
		// The exit sees the entry's address, shared by all its clients:
		// no per-source cap here.
		g.answer(c, m.ID, m.Sealed, netip.Prefix{})
	case *wgreg.Relay:
		if g.cfg.Role != wgreg.RoleEntry {
			g.m.registrations.WithLabelValues(regRefused).Inc()
			g.send(c, &wgreg.Error{ID: m.ID, Code: wgreg.ErrCodeRefused, Text: "not an entry"})
			return nil
		}
		sealed, e := g.relayTo(m)
		if e != nil {
			g.m.registrations.WithLabelValues(regRelayFail).Inc()
			e.ID = m.ID
			g.send(c, e)
			return nil
		}
		g.send(c, &wgreg.Reply{ID: m.ID, Sealed: sealed})
	default:
		g.m.registrations.WithLabelValues(regMalformed).Inc()
		g.send(c, &wgreg.Error{Code: wgreg.ErrCodeMalformed, Text: "message only travels to clients"})
	}
	return nil
}

func (g *Gateway) send(c *link.Conn, m interface{ AppendBinary([]byte) ([]byte, error) }) {
	b, err := m.AppendBinary(nil)
	if err != nil {
		g.log.Error("encoding a registration message", "err", err)
		return
	}
	c.Send(link.Frame{Kind: link.KindClient, Payload: b})
}

// answer opens a request sealed to this gateway, registers the peer and
// sends the sealed answer (or an Error when it does not open).
func (g *Gateway) answer(c *link.Conn, id uint32, sealed []byte, src netip.Prefix) {
	rot, err := wgreg.RequestRotation(sealed)
	if err != nil {
		g.m.registrations.WithLabelValues(regMalformed).Inc()
		g.send(c, &wgreg.Error{ID: id, Code: wgreg.ErrCodeMalformed, Text: err.Error()})
		return
	}
	key, err := g.cfg.HPKEKey(rot)
	if err != nil {
		g.m.registrations.WithLabelValues(regRefused).Inc()
		g.send(c, &wgreg.Error{ID: id, Code: wgreg.ErrCodeRefused, Text: fmt.Sprintf("no key for rotation %d", rot)})
		return
	}
	req, opened, err := wgreg.OpenRequest(sealed, g.cfg.Role, g.cfg.Identity, key)
	if err != nil {
		g.m.registrations.WithLabelValues(regMalformed).Inc()
		g.send(c, &wgreg.Error{ID: id, Code: wgreg.ErrCodeMalformed, Text: "request does not open"})
		return
	}
	ans, outcome := g.register(req, opened, src)
	g.m.registrations.WithLabelValues(outcome).Inc()
	out, err := opened.SealAnswer(ans)
	if err != nil {
		g.log.Error("sealing an answer", "err", err)
		return
	}
	g.send(c, &wgreg.Reply{ID: id, Sealed: out})
}

// register judges an opened request and, if it passes, adds the peer.
func (g *Gateway) register(req *wgreg.Request, opened *wgreg.Opened, src netip.Prefix) (*wgreg.Answer, string) {
	now := g.cfg.Now()
	if d := now.Sub(req.Time); d > g.cfg.MaxClockSkew || d < -g.cfg.MaxClockSkew {
		return &wgreg.Answer{Status: wgreg.AnswerRefused, Text: "request time too far from the gateway's clock"}, regStale
	}
	switch fresh, full := g.nonces.add(req.Nonce, now); {
	case full:
		return &wgreg.Answer{Status: wgreg.AnswerRefused, Text: "busy; try again later"}, regFull
	case !fresh:
		return &wgreg.Answer{Status: wgreg.AnswerRefused, Text: "replayed request"}, regReplay
	}
	if g.cfg.RequireTickets && len(req.Spend) == 0 {
		return &wgreg.Answer{Status: wgreg.AnswerTicket, Text: fmt.Sprintf("no ticket: this gateway requires a wireguard-%s ticket; run `nymvpn tickets add VOUCHER`", g.cfg.Role)}, regTicket
	}
	paid := false
	if g.cfg.Tickets != nil && len(req.Spend) > 0 {
		paid = true
		ctx, cancel := context.WithTimeout(g.ctx, g.cfg.RelayTimeout)
		err := g.cfg.Tickets.VerifySpend(ctx, g.cfg.Role, req.Spend)
		cancel()
		if err != nil {
			// The verifier's words say what was wrong (type, gateway,
			// spent, expired): the client can act on them.
			return &wgreg.Answer{Status: wgreg.AnswerTicket, Text: "ticket refused: " + err.Error()}, regTicket
		}
	}
	psk, err := opened.PSK()
	if err != nil {
		return &wgreg.Answer{Status: wgreg.AnswerRefused, Text: "internal error"}, regRefused
	}
	// A registration of a key already here is a renewal (a top-up when
	// paid): same addresses, the new PSK, its ticket's bytes added to
	// what is left. The gate keeps the meter from removing the peer
	// between the two.
	g.quota.gate.Lock()
	defer g.quota.gate.Unlock()
	p, err := g.peers.add(peerKey(req.WGKey), psk, now, src, g.cfg.MaxPeersPerIP)
	if errors.Is(err, errPoolFull) {
		return &wgreg.Answer{Status: wgreg.AnswerFull, Text: "no address left"}, regFull
	}
	if errors.Is(err, errSourceFull) {
		return &wgreg.Answer{Status: wgreg.AnswerFull, Text: "too many peers from your address"}, regFull
	}
	if err != nil {
		g.log.Warn("adding a peer", "err", err)
		return &wgreg.Answer{Status: wgreg.AnswerRefused, Text: "could not add the peer"}, regRefused
	}
	if paid && g.cfg.TicketQuota > 0 {
		g.quota.add(peerKey(req.WGKey), g.cfg.TicketQuota)
	}
	g.m.peers.Set(float64(g.peers.len()))
	a := &wgreg.Answer{GatewayKey: g.pubKey, AddrV4: netip.PrefixFrom(p.v4, 32), PeerTimeout: g.cfg.PeerTimeout,
		Allowance: g.allowanceLeft(peerKey(req.WGKey))}
	if p.v6.IsValid() {
		a.AddrV6 = netip.PrefixFrom(p.v6, 128)
	}
	return a, regOK
}

// maxHandshakesFrom is the registration server's bound on handshakes at
// once from src (0: the link's per-address default). At an exit, a
// gateway's address gets MaxRelayHandshakes: every registration an entry
// relays comes from it, on a link of its own, so the per-address bound
// (one client's) would refuse the ninth client registering at once
// through one entry. The check is by address because it runs before the
// handshake names the peer; Forward still checks the peer's key.
func (g *Gateway) maxHandshakesFrom(src netip.Prefix) int {
	if g.cfg.Role != wgreg.RoleExit {
		return 0
	}
	if m := g.gatewaySrcs.Load(); m != nil && (*m)[src] {
		return g.cfg.MaxRelayHandshakes
	}
	return 0
}

// isGateway reports whether static is the Noise key of a gateway in the
// current topology: only those may forward registrations to an exit.
func (g *Gateway) isGateway(static [32]byte) bool {
	for _, t := range []*directory.Topology{g.topo.Load(), g.prevTopo.Load()} {
		if t == nil {
			continue
		}
		for _, group := range [][]directory.Node{t.Entry, t.Exit} {
			for i := range group {
				if group[i].NoiseKey == static {
					return true
				}
			}
		}
	}
	return false
}

// relayTo passes a client's sealed request to the exit it names, over a
// link of this node's own (the exit sees the entry, not the client), and
// returns the exit's sealed reply.
func (g *Gateway) relayTo(m *wgreg.Relay) ([]byte, *wgreg.Error) {
	t := g.topo.Load()
	var exit *directory.Node
	if t != nil {
		for i := range t.Exit {
			if t.Exit[i].Identity == m.Exit && t.Exit[i].WGAddr != "" {
				exit = &t.Exit[i]
			}
		}
	}
	if exit == nil {
		return nil, &wgreg.Error{Code: wgreg.ErrCodeUnavailable, Text: "no such exit with WireGuard in the consensus"}
	}
	var peerKEM *link.KEMPublicKey
	if kem, ok := exit.KEMKeyFor(t.Rotation); ok {
		peerKEM, _ = link.ParseKEMPublicKey(kem)
	}
	ctx, cancel := context.WithTimeout(g.ctx, g.cfg.RelayTimeout)
	defer cancel()
	answers := make(chan any, 1)
	conn, err := link.Dial(ctx, exit.WGAddr, exit.NoiseKey, link.Config{
		Static:      g.cfg.Link,
		DialContext: g.cfg.DialContext,
		Logger:      g.log,
		QueueLen:    4,
		PeerKEM:     func([32]byte) *link.KEMPublicKey { return peerKEM },
		Handler: func(_ *link.Conn, f link.Frame) error {
			msg, err := wgreg.Parse(f.Payload)
			if err != nil {
				return err
			}
			select {
			case answers <- msg:
			default:
			}
			return nil
		},
	})
	if err != nil {
		g.log.Debug("relaying a registration", "exit", exit.Identity, "err", err)
		return nil, &wgreg.Error{Code: wgreg.ErrCodeUnavailable, Text: "exit unreachable"}
	}
	defer conn.Close()
	fwd, err := (&wgreg.Forward{ID: 1, Sealed: m.Sealed}).AppendBinary(nil)
	if err != nil || !conn.Send(link.Frame{Kind: link.KindClient, Payload: fwd}) {
		return nil, &wgreg.Error{Code: wgreg.ErrCodeUnavailable, Text: "exit unreachable"}
	}
	select {
	case msg := <-answers:
		switch r := msg.(type) {
		case *wgreg.Reply:
			return r.Sealed, nil
		case *wgreg.Error:
			return nil, &wgreg.Error{Code: r.Code, Text: "exit: " + r.Text}
		}
		return nil, &wgreg.Error{Code: wgreg.ErrCodeUnavailable, Text: "exit answered nonsense"}
	case <-conn.Done():
		return nil, &wgreg.Error{Code: wgreg.ErrCodeUnavailable, Text: "exit closed the link"}
	case <-ctx.Done():
		return nil, &wgreg.Error{Code: wgreg.ErrCodeUnavailable, Text: "exit did not answer in time"}
	}
}
