package wgreg

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/link"
)

// Registration is what a client gets for one gateway: everything its
// WireGuard peer for that gateway needs.
type Registration struct {
	// GatewayKey is the gateway's WireGuard public key (curve25519).
	GatewayKey [32]byte
	// Endpoint is the gateway's WireGuard UDP endpoint (its WGAddr).
	Endpoint netip.AddrPort
	// AddrV4 and AddrV6 are the client's tunnel addresses at that gateway;
	// AddrV6 is invalid when the gateway has no IPv6 range.
	AddrV4, AddrV6 netip.Prefix
	// PSK is the WireGuard pre-shared key, from the ML-KEM and X25519
	// secrets of the sealing.
	PSK [32]byte
	// PeerTimeout is how long the gateway keeps the peer without a
	// handshake; WireGuard's own rekeying (every 2 minutes of traffic) and
	// a persistent keepalive shorter than this keep it alive.
	PeerTimeout time.Duration
	// Allowance is the bytes the peer may still move through the gateway
	// (both directions, as WireGuard counts them); 0: unmetered. See
	// Answer.Allowance.
	Allowance uint64
}

// DefaultTimeout bounds one registration when Options.Timeout is zero.
const DefaultTimeout = 15 * time.Second

// Options configure a registration session. The zero value works.
type Options struct {
	// Rotation is the key rotation of the client's topology: requests are
	// sealed to the gateways' KEM keys of it (their first listed key if
	// they have none for it).
	Rotation uint64
	// DialContext makes the TCP connection to the entry: nymvpn's marks
	// its socket so it bypasses the tunnel. Nil uses a net.Dialer.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// EntrySpend and ExitSpend are ticket spends (wireguard-entry and
	// wireguard-exit) for gateways that require tickets.
	EntrySpend, ExitSpend []byte
	// Timeout bounds each registration. Default DefaultTimeout.
	Timeout time.Duration
	// Now is the clock; nil is time.Now.
	Now func() time.Time
	// Logger gets the link's events; nil is slog.Default().
	Logger *slog.Logger
}

func (o Options) withDefaults() (Options, error) {
	if o.Timeout < 0 {
		return o, fmt.Errorf("wgreg: negative timeout %v", o.Timeout)
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if len(o.EntrySpend) > MaxSpend || len(o.ExitSpend) > MaxSpend {
		return o, fmt.Errorf("wgreg: spend over %d bytes", MaxSpend)
	}
	return o, nil
}

// Session is a registration link to one entry gateway: it registered with
// the entry and relays registrations with exits through it. Close it once
// the registrations are done; the WireGuard peers do not depend on it.
type Session struct {
	opts   Options
	entry  directory.Node
	conn   *link.Conn
	cancel context.CancelFunc

	mu      sync.Mutex
	nextID  uint32
	waiting map[uint32]chan any
}

// ErrGateway is returned, wrapped, when a gateway refuses or cannot serve.
var ErrGateway = errors.New("wgreg: gateway refused")

// RegisterEntry opens a registration link to entry (its WGAddr, over TCP)
// with a fresh link key, and registers wgPub there.
func RegisterEntry(ctx context.Context, entry directory.Node, wgPub [32]byte, opts Options) (Registration, *Session, error) {
	s, err := Dial(ctx, entry, opts)
	if err != nil {
		return Registration{}, nil, err
	}
	reg, err := s.RegisterEntry(ctx, wgPub)
	if err != nil {
		s.Close()
		return Registration{}, nil, err
	}
	return reg, s, nil
}

// Dial opens a registration link to entry (its WGAddr, over TCP) with a
// fresh link key. A client tops up a peer's allowance (see
// Registration.Allowance) on a new session: registering the same key again
// with a new ticket adds to what the gateway allows it.
func Dial(ctx context.Context, entry directory.Node, opts Options) (*Session, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	ep, ok := entry.WGAddrPort()
	if !ok {
		return nil, fmt.Errorf("wgreg: entry %s announces no WireGuard address", entry.Identity)
	}
	static, err := link.GenerateKeyPair(nil)
	if err != nil {
		return nil, err
	}
	s := &Session{opts: opts, entry: entry, waiting: make(map[uint32]chan any)}
	var peerKEM *link.KEMPublicKey
	if kem, ok := entry.KEMKeyFor(opts.Rotation); ok {
		if peerKEM, err = link.ParseKEMPublicKey(kem); err != nil {
			return nil, fmt.Errorf("wgreg: entry's KEM key: %w", err)
		}
	} else if entry.RequiresPQ {
		return nil, fmt.Errorf("wgreg: entry %s requires post-quantum links but has no KEM key for rotation %d", entry.Identity, opts.Rotation)
	}
	// The link lives as long as ctx or until Close; its connect and
	// handshake have timeouts of their own.
	lctx, cancel := context.WithCancel(ctx)
	s.cancel = cancel
	conn, err := link.Dial(lctx, ep.String(), entry.NoiseKey, link.Config{
		Static:      static,
		Handler:     s.handle,
		OnClose:     func(*link.Conn, error) { s.failAll() },
		DialContext: opts.DialContext,
		Logger:      opts.Logger,
		PeerKEM: func([32]byte) *link.KEMPublicKey {
			return peerKEM
		},
		QueueLen: 16,
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("wgreg: registration link to entry %s at %s: %w", entry.Identity, ep, err)
	}
	s.conn = conn
	return s, nil
}

// RegisterEntry registers wgPub with the session's entry, paying with
// Options.EntrySpend.
func (s *Session) RegisterEntry(ctx context.Context, wgPub [32]byte) (Registration, error) {
	return s.register(ctx, &s.entry, RoleEntry, s.opts.EntrySpend, wgPub, func(id uint32, sealed []byte) ([]byte, error) {
		return (&Register{ID: id, Sealed: sealed}).AppendBinary(nil)
	})
}

// RegisterExit registers wgPub with exit, relayed by the session's entry:
// the exit sees the entry's address, the entry sees only ciphertext.
func (s *Session) RegisterExit(ctx context.Context, exit directory.Node, wgPub [32]byte) (Registration, error) {
	if exit.Identity == s.entry.Identity {
		return Registration{}, errors.New("wgreg: the exit must not be the entry")
	}
	return s.register(ctx, &exit, RoleExit, s.opts.ExitSpend, wgPub, func(id uint32, sealed []byte) ([]byte, error) {
		return (&Relay{ID: id, Exit: exit.Identity, Sealed: sealed}).AppendBinary(nil)
	})
}

// register seals a request to gw, sends it wrapped by wrap and waits for the
// answer.
func (s *Session) register(ctx context.Context, gw *directory.Node, role Role, spend []byte, wgPub [32]byte, wrap func(uint32, []byte) ([]byte, error)) (Registration, error) {
	ep, ok := gw.WGAddrPort()
	if !ok {
		return Registration{}, fmt.Errorf("wgreg: %s %s announces no WireGuard address", role, gw.Identity)
	}
	req := &Request{WGKey: wgPub, Time: s.opts.Now(), Spend: spend}
	rand.Read(req.Nonce[:])
	sealed, pending, err := SealRequest(gw, s.opts.Rotation, role, req)
	if err != nil {
		return Registration{}, err
	}
	id, ch := s.expect()
	defer s.forget(id)
	msg, err := wrap(id, sealed)
	if err != nil {
		return Registration{}, err
	}
	if !s.conn.Send(link.Frame{Kind: link.KindClient, Payload: msg}) {
		return Registration{}, fmt.Errorf("wgreg: registration link to the entry is closed")
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	var got any
	select {
	case got = <-ch:
	case <-ctx.Done():
		return Registration{}, fmt.Errorf("wgreg: registering with %s %s: %w", role, gw.Identity, ctx.Err())
	}
	switch m := got.(type) {
	case *Error:
		return Registration{}, fmt.Errorf("%w: %s %s: code %d: %s", ErrGateway, role, gw.Identity, m.Code, m.Text)
	case *Reply:
		a, err := pending.OpenAnswer(m.Sealed)
		if err != nil {
			return Registration{}, fmt.Errorf("wgreg: %s %s's answer: %w", role, gw.Identity, err)
		}
		if a.Status != AnswerOK {
			return Registration{}, fmt.Errorf("%w: %s %s: status %d: %s", ErrGateway, role, gw.Identity, a.Status, a.Text)
		}
		psk, err := pending.PSK()
		if err != nil {
			return Registration{}, err
		}
		return Registration{GatewayKey: a.GatewayKey, Endpoint: ep, AddrV4: a.AddrV4, AddrV6: a.AddrV6, PSK: psk, PeerTimeout: a.PeerTimeout, Allowance: a.Allowance}, nil
	}
	return Registration{}, fmt.Errorf("wgreg: registration link to the entry closed")
}

func (s *Session) expect() (uint32, chan any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID++
	ch := make(chan any, 1)
	if s.waiting == nil { // closed
		close(ch)
		return s.nextID, ch
	}
	s.waiting[s.nextID] = ch
	return s.nextID, ch
}

func (s *Session) forget(id uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.waiting, id)
}

// handle takes the entry's answers, on the link's reader goroutine.
func (s *Session) handle(_ *link.Conn, f link.Frame) error {
	if f.Kind != link.KindClient {
		return nil
	}
	msg, err := Parse(f.Payload)
	if err != nil {
		return err
	}
	var id uint32
	switch m := msg.(type) {
	case *Reply:
		id = m.ID
	case *Error:
		id = m.ID
	default:
		return fmt.Errorf("wgreg: the entry sent a message of type %d", f.Payload[0])
	}
	s.mu.Lock()
	ch := s.waiting[id]
	delete(s.waiting, id)
	s.mu.Unlock()
	if ch != nil {
		ch <- msg
	}
	return nil
}

// failAll wakes every waiting registration once the link is gone.
func (s *Session) failAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ch := range s.waiting {
		close(ch)
	}
	s.waiting = nil
}

// Close closes the registration link.
func (s *Session) Close() error {
	if s.conn != nil {
		s.conn.Close()
	}
	s.cancel()
	return nil
}
