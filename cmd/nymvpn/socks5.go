package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/nym-go/nym/mixnet/client"
	"github.com/nym-go/nym/socks"
	"github.com/nym-go/nym/tun"
	"github.com/nym-go/nym/vpn"
)

// socksOptions are the socks5 subcommand's own settings.
type socksOptions struct {
	// Isolate gives each SOCKS user name its own tunnel: its own mixnet
	// client, session and addresses at the exit.
	Isolate bool
	// MaxTunnels bounds the isolated tunnels open at once.
	MaxTunnels int
	// IdleTimeout closes an isolated tunnel nothing has used for this long.
	IdleTimeout time.Duration
	// Tickets is the ticketbook that pays entry gateways requiring
	// tickets ("": none).
	Tickets string
	// Ready, when set, is called once the proxy accepts clients.
	Ready func()

	onPool func(*tunnelPool) // tests: sees the pool
}

func newSocks5(o *options) *cobra.Command {
	var req connectRequest
	var listen string
	var so socksOptions
	cmd := &cobra.Command{
		Use:   "socks5 --listen 127.0.0.1:1080 --directory URL --directory-key KEY",
		Short: "Serve SOCKS4/4a/5 through the exit's IP router, rootless, on a userspace TCP/IP stack",
		Long: `socks5 runs in the foreground and serves SOCKS4, SOCKS4a and SOCKS5 (TCP
CONNECT and UDP ASSOCIATE) on --listen. Traffic goes through the mixnet to an
exit's IP packet router, carried by a userspace TCP/IP stack: it needs no root
and changes nothing on the host (no TUN, routes, DNS or firewall). Names are
resolved through the tunnel by the --dns resolvers only, never by the host.

With --isolate every SOCKS user name (SOCKS5 username, SOCKS4 user id) gets a
tunnel of its own, opened on first use and closed when idle.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := req.check(); err != nil {
				return err
			}
			if req.Mode == modeFast {
				// Fast mode's inner WireGuard needs a TUN the kernel routes
				// to; the rootless proxy has none.
				return fmt.Errorf("--mode fast: the SOCKS proxy runs through the mixnet only; use `nymvpn connect --mode fast`")
			}
			if len(req.DNS) == 0 {
				return fmt.Errorf("--dns: at least one resolver is needed; names are resolved through the tunnel only")
			}
			log, err := o.logger()
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("--listen %s: %w", listen, err)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return serveSocks(ctx, ln, req, so, log)
		},
	}
	req.flags(cmd.Flags())
	cmd.Flags().MarkHidden("kill-switch") // nothing on the host is touched
	cmd.Flags().MarkHidden("mode")        // the mixnet only
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:1080", "address to serve SOCKS on")
	cmd.Flags().BoolVar(&so.Isolate, "isolate", false, "a tunnel of its own for each SOCKS user name")
	cmd.Flags().IntVar(&so.MaxTunnels, "isolate-max", 16, "most isolated tunnels open at once")
	cmd.Flags().DurationVar(&so.IdleTimeout, "isolate-idle", 5*time.Minute, "close an isolated tunnel unused for this long")
	cmd.Flags().StringVar(&so.Tickets, "tickets", "", "ticketbook paying gateways that require tickets (`nymvpn tickets --book FILE add VOUCHER` makes one)")
	return cmd
}

// serveSocks is the socks5 command without its flags and signals: it plans
// the path with the directory, serves SOCKS on ln until ctx ends, then
// closes every tunnel (telling the exit goodbye). It closes ln. req must
// have passed check.
func serveSocks(ctx context.Context, ln net.Listener, req connectRequest, so socksOptions, log *slog.Logger) error {
	defer ln.Close()
	if so.MaxTunnels <= 0 {
		so.MaxTunnels = 16
	}
	if so.IdleTimeout <= 0 {
		so.IdleTimeout = 5 * time.Minute
	}
	pctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	// Unmarked: the proxy changes nothing on the host, so nothing needs to
	// bypass anything.
	out, err := newOutside(pctx, req.network, false)
	if err != nil {
		return err
	}
	defer out.close()
	p, err := makePlan(pctx, req, out, "")
	if err != nil {
		return err
	}
	if so.Tickets != "" {
		p.tickets = &client.BookTickets{Path: so.Tickets}
	}
	if p.profile.Weak {
		log.Warn("profile " + p.profile.Name + ": " + p.profile.Description)
	}
	pool := newTunnelPool(p, req.DNS, so, log)
	defer pool.close()
	if so.onPool != nil {
		so.onPool(pool)
	}

	srv := &socks.Server{Logger: log}
	if so.Isolate {
		srv.Isolate = func(user string) socks.Dialer { return poolDialer{pool, user} }
	} else {
		// One tunnel for everyone, up before the first client so that
		// a refusal or an unreachable exit is reported at once.
		c, err := pool.acquire(ctx, "")
		if err != nil {
			return err
		}
		pool.release(c)
	}
	srv.Dialer = poolDialer{pool, ""}
	log.Info("SOCKS4/4a/5 proxy listening", "addr", ln.Addr(), "exit", p.exit, "isolate", so.Isolate)
	if so.Ready != nil {
		so.Ready()
	}
	return srv.Serve(ctx, ln)
}

// circuit is one tunnel with its userspace stack.
type circuit struct {
	key string
	// id names the circuit in logs: the key is a SOCKS username, which an
	// operator's logs should not collect.
	id    uint64
	ready chan struct{} // closed when the connect ended; then err or t/net are set
	err   error
	t     *vpn.Tunnel
	net   *tun.Net

	cancel context.CancelFunc // stops Run
	done   chan struct{}      // closed when Run returned

	refusals refusals // the exit's policy refusals, for dials in flight

	// Under the pool's mutex.
	active   int // connections, sockets and lookups using it
	lastUsed time.Time
}

// tunnelPool holds the tunnels, by SOCKS user name when isolating ("" is
// the only key otherwise), opening them on first use and closing idle
// ones.
type tunnelPool struct {
	plan *plan
	dns  []netip.Addr
	so   socksOptions
	log  *slog.Logger

	ctx    context.Context // ends at close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	circuits map[string]*circuit
	closed   bool
	opened   uint64 // circuits ever made, for their ids
}

func newTunnelPool(p *plan, dns []netip.Addr, so socksOptions, log *slog.Logger) *tunnelPool {
	ctx, cancel := context.WithCancel(context.Background())
	tp := &tunnelPool{plan: p, dns: dns, so: so, log: log, ctx: ctx, cancel: cancel, circuits: map[string]*circuit{}}
	if so.Isolate {
		tp.wg.Go(tp.reapIdle)
	}
	return tp
}

var errTooManyTunnels = errors.New("too many isolated tunnels in use (--isolate-max)")

// acquire returns the key's tunnel, connecting it if needed, and counts
// one use of it until release.
func (tp *tunnelPool) acquire(ctx context.Context, key string) (*circuit, error) {
	for {
		tp.mu.Lock()
		if tp.closed {
			tp.mu.Unlock()
			return nil, errors.New("shutting down")
		}
		c := tp.circuits[key]
		if c == nil {
			if len(tp.circuits) >= tp.so.MaxTunnels && !tp.evictLocked() {
				tp.mu.Unlock()
				return nil, errTooManyTunnels
			}
			tp.opened++
			c = &circuit{key: key, id: tp.opened, ready: make(chan struct{}), done: make(chan struct{})}
			tp.circuits[key] = c
			tp.wg.Go(func() { tp.connect(c) })
		}
		c.active++
		c.lastUsed = time.Now()
		tp.mu.Unlock()

		select {
		case <-c.ready:
		case <-ctx.Done():
			tp.release(c)
			return nil, ctx.Err()
		}
		if c.err != nil {
			tp.release(c)
			return nil, c.err
		}
		select {
		case <-c.done: // died since; the next round opens another
			tp.release(c)
			tp.forget(c)
			continue
		default:
		}
		return c, nil
	}
}

func (tp *tunnelPool) release(c *circuit) {
	tp.mu.Lock()
	c.active--
	c.lastUsed = time.Now()
	tp.mu.Unlock()
}

// forget removes c from the pool if it is still there.
func (tp *tunnelPool) forget(c *circuit) {
	tp.mu.Lock()
	if tp.circuits[c.key] == c {
		delete(tp.circuits, c.key)
	}
	tp.mu.Unlock()
}

// evictLocked closes the least recently used unused tunnel, to make room.
func (tp *tunnelPool) evictLocked() bool {
	var lru *circuit
	for _, c := range tp.circuits {
		if c.active == 0 && (lru == nil || c.lastUsed.Before(lru.lastUsed)) {
			lru = c
		}
	}
	if lru == nil {
		return false
	}
	delete(tp.circuits, lru.key)
	tp.log.Info("closing the least recently used isolated tunnel", "circuit", lru.id)
	tp.stop(lru)
	return true
}

// stop ends c's Run (or its connect) without waiting.
func (tp *tunnelPool) stop(c *circuit) {
	select {
	case <-c.ready:
		if c.cancel != nil {
			c.cancel()
		}
	default:
		// Still connecting: connect sees the pool's context, or its
		// circuit gone, and cleans up.
		tp.wg.Go(func() {
			<-c.ready
			if c.cancel != nil {
				c.cancel()
			}
		})
	}
}

// connect opens c's tunnel and runs it until stopped or dead.
func (tp *tunnelPool) connect(c *circuit) {
	ctx, cancel := context.WithTimeout(tp.ctx, 90*time.Second)
	defer cancel()
	log := tp.log
	if tp.so.Isolate {
		log = log.With("circuit", c.id)
	}
	t, err := vpn.Connect(ctx, vpn.Config{Dial: tp.plan.dialer(log), Profile: tp.plan.profile, Logger: log,
		OnRefused: func(dst netip.AddrPort, _ uint8, _ string) { c.refusals.refused(dst) }})
	if err != nil {
		c.err = fmt.Errorf("connecting to the exit %s: %w", tp.plan.exit, err)
		close(c.done)
		close(c.ready)
		tp.forget(c)
		return
	}
	a := t.Addrs()
	var addrs []netip.Addr
	for _, ip := range []netip.Addr{a.V4, a.V6} {
		if ip.IsValid() && !ip.IsUnspecified() {
			addrs = append(addrs, ip)
		}
	}
	dev, n, err := tun.CreateNetstack(addrs, tp.dns, t.MTU())
	if err != nil {
		t.Close()
		err = fmt.Errorf("userspace stack for %v (MTU %d): %w", addrs, t.MTU(), err)
	}
	rctx, rcancel := context.WithCancel(tp.ctx)
	c.t, c.net, c.cancel, c.err = t, n, rcancel, err
	close(c.ready)
	if err != nil {
		rcancel()
		close(c.done)
		tp.forget(c)
		return
	}
	log.Info("tunnel up", "addresses", addrs, "mtu", t.MTU())
	err = t.Run(rctx, dev)
	close(c.done)
	tp.forget(c)
	rcancel()
	if err != nil {
		log.Error("tunnel stopped", "err", err)
	} else {
		log.Debug("tunnel closed")
	}
}

// reapIdle closes isolated tunnels unused for IdleTimeout.
func (tp *tunnelPool) reapIdle() {
	tick := time.NewTicker(max(tp.so.IdleTimeout/4, 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-tp.ctx.Done():
			return
		case now := <-tick.C:
			tp.mu.Lock()
			for k, c := range tp.circuits {
				if c.active == 0 && now.Sub(c.lastUsed) >= tp.so.IdleTimeout {
					delete(tp.circuits, k)
					tp.log.Info("closing idle isolated tunnel", "circuit", c.id)
					tp.stop(c)
				}
			}
			tp.mu.Unlock()
		}
	}
}

// tunnels is how many tunnels are open or opening.
func (tp *tunnelPool) tunnels() int {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return len(tp.circuits)
}

// close stops every tunnel and waits until each has said goodbye to the
// exit.
func (tp *tunnelPool) close() {
	tp.mu.Lock()
	tp.closed = true
	tp.mu.Unlock()
	tp.cancel()
	tp.wg.Wait()
}

// poolDialer is the socks.Dialer of one user's tunnel, opened on first use.
type poolDialer struct {
	pool *tunnelPool
	key  string
}

func (d poolDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	c, err := d.pool.acquire(ctx, d.key)
	if err != nil {
		return nil, err
	}
	// A refusal from the exit ends the dial at once, as "not allowed".
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var refused <-chan struct{}
	if dst, perr := netip.ParseAddrPort(address); perr == nil {
		var stop func()
		refused, stop = c.refusals.wait(dst)
		defer stop()
		go func() {
			select {
			case <-refused:
				cancel()
			case <-dctx.Done():
			}
		}()
	}
	conn, err := c.net.DialContext(dctx, network, address)
	if err != nil {
		d.pool.release(c)
		select {
		case <-refused:
			return nil, fmt.Errorf("%w: the exit refused %s", socks.ErrPolicy, address)
		default:
		}
		return nil, dialError(err)
	}
	tc := &trackedConn{Conn: conn}
	tc.release = func() { d.pool.release(c) }
	return tc, nil
}

func (d poolDialer) ListenPacket(ctx context.Context, network string) (net.PacketConn, error) {
	c, err := d.pool.acquire(ctx, d.key)
	if err != nil {
		return nil, err
	}
	pc, err := c.net.ListenUDPAddrPort(netip.AddrPort{})
	if err != nil {
		d.pool.release(c)
		return nil, err
	}
	tp := &trackedPacketConn{PacketConn: pc}
	tp.release = func() { d.pool.release(c) }
	return tp, nil
}

func (d poolDialer) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	c, err := d.pool.acquire(ctx, d.key)
	if err != nil {
		return nil, err
	}
	defer d.pool.release(c)
	return c.net.LookupNetIP(ctx, network, host)
}

// dialError maps refusals of the userspace stack to socks.ErrPolicy, so
// the client hears "not allowed" rather than a generic failure.
func dialError(err error) error {
	if errors.Is(err, tun.ErrLoopback) {
		return fmt.Errorf("%w: %w", socks.ErrPolicy, err)
	}
	return err
}

// trackedConn runs release once when closed: a SOCKS connection counts as
// a use of its tunnel until then, a gateway connection keeps the kill
// switch's hole for its gateway open. It keeps CloseWrite, which the relay
// uses for half-closes.
type trackedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

func (c *trackedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

type trackedPacketConn struct {
	net.PacketConn
	once    sync.Once
	release func()
}

func (c *trackedPacketConn) Close() error {
	err := c.PacketConn.Close()
	c.once.Do(c.release)
	return err
}
