package exit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nym-go/nym/anonymity"
	"github.com/nym-go/nym/ipr"
	"github.com/nym-go/nym/ipr/router"
	"github.com/nym-go/nym/mixnet/client"
	"github.com/nym-go/nym/tun"
)

// ErrNotPrivileged is returned by Run without CAP_NET_ADMIN.
var ErrNotPrivileged = errors.New("exit: the IP packet router needs CAP_NET_ADMIN (run as root)")

// Service is the exit's IP packet router. Create it with New and run it
// with Run; it is not reusable.
type Service struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	router *router.Router
	mix    *client.Client

	controlTimeouts atomic.Uint64
}

// New checks cfg and returns a Service. Nothing is opened before Run.
func New(cfg Config) (*Service, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Service{cfg: cfg, log: cfg.Logger.With("component", "ip-router")}, nil
}

// Router is the running router, nil before Run has set it up.
func (s *Service) Router() *router.Router {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.router
}

// Client is the router's mixnet client, nil before Run has set the router
// up.
func (s *Service) Client() *client.Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mix
}

// Run connects the router's mixnet client to the node's gateway, sets up
// the TUN and the exit networking, and routes until ctx ends. On return the
// sessions are told, the TUN is closed and the host's networking is
// restored.
func (s *Service) Run(ctx context.Context) error {
	host := s.cfg.Host
	if host == nil {
		host = newSystemHost(&s.cfg)
	}
	if (s.cfg.Host == nil || s.cfg.Device == nil) && !HasNetAdmin() {
		if s.cfg.Device != nil {
			s.cfg.Device.Close()
		}
		return ErrNotPrivileged
	}
	mix, err := s.connect(ctx)
	if err != nil {
		if s.cfg.Device != nil {
			s.cfg.Device.Close()
		}
		return err
	}
	defer mix.Close()

	capacity := mix.ReplyCapacity()
	mtu := ipr.MaxIPPacket(capacity)
	dev := s.cfg.Device
	var own []netip.Addr
	if err := s.cfg.InNetNS(func() error {
		if dev == nil {
			if dev, err = tun.CreateKernel(s.cfg.TUNName, mtu); err != nil {
				return fmt.Errorf("exit: creating TUN %s: %w", s.cfg.TUNName, err)
			}
		}
		if own, err = host.Up(dev); err != nil {
			dev.Close()
			return err
		}
		return nil
	}); err != nil {
		return err
	}
	defer func() {
		// The exit networking goes first, so nothing is forwarded
		// unfiltered while the TUN disappears.
		if err := errors.Join(host.Close(), dev.Close()); err != nil {
			s.log.Error("restoring the exit's networking", "err", err)
		}
	}()

	if s.cfg.Trace != nil {
		id := mix.Identity().Public
		dev = &tracedDevice{Device: dev, rec: s.cfg.Trace, self: anonymity.IDOf(id[:])}
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	rcfg := s.cfg.Router
	rcfg.PayloadCapacity = capacity
	rcfg.TUN = dev
	rcfg.CanReply = func(key router.SessionKey) bool { return mix.ReplySURBs(client.AnonymousSenderTag(key)) > 0 }
	rcfg.Reply = func(key router.SessionKey, resp []byte) error {
		// Control replies run on the sender's own worker (Submit), and
		// the router asked CanReply first; the timeout bounds the wait
		// for a top-up the sender was asked for. Such a wait ends when
		// the service stops; a reply with a SURB in hand goes out even
		// then: the goodbyes of Router.Close.
		tag := client.AnonymousSenderTag(key)
		base := runCtx
		if mix.ReplySURBs(tag) > 0 {
			base = context.WithoutCancel(runCtx)
		}
		rctx, cancel := context.WithTimeout(base, s.cfg.ControlTimeout)
		defer cancel()
		err := mix.Reply(rctx, tag, resp)
		if errors.Is(err, context.DeadlineExceeded) {
			s.controlTimeouts.Add(1)
		}
		return err
	}
	// Each session's queue is a reply stream of its own: the client pulls
	// a bundle from it whenever it holds a SURB for the session, and says
	// when it holds none.
	rcfg.OpenStream = func(key router.SessionKey, d router.Downstream) (router.Stream, error) {
		st, err := mix.OpenReplyStream(client.AnonymousSenderTag(key), replySource{d}, d.Starved)
		if err == nil {
			// At the pace the client's shaped downstream takes replies,
			// when it said: full replies under load, the queue here.
			st.Pace(d.ReplyInterval(), replyBurst)
		}
		return st, err
	}
	flusher := newConntrackFlusher(host.FlushConntrack, s.log)
	rcfg.Released = flusher.released
	rcfg.Policy = routerPolicy(s.cfg.Policy, s.cfg.AllowPrivate, own)
	rt, err := router.New(rcfg)
	if err != nil {
		return fmt.Errorf("exit: router: %w", err)
	}
	s.mu.Lock()
	s.router, s.mix = rt, mix
	s.mu.Unlock()
	s.log.Info("IP packet router up", "address", mix.Address(), "mtu", mtu)

	var wg sync.WaitGroup
	wg.Go(func() { rt.Run(runCtx) })
	wg.Go(func() { flusher.run(runCtx) })
	wg.Go(func() { s.readTUN(dev, rt) })
	wg.Go(func() { s.receive(runCtx, mix, rt) })

	<-ctx.Done()
	// Tell the clients while the mixnet client still runs, and give the
	// goodbyes a moment to leave.
	rt.Close()
	fctx, fcancel := context.WithTimeout(context.Background(), time.Second)
	_ = mix.Flush(fctx)
	fcancel()
	cancel()
	dev.Close() // unblocks readTUN
	mix.Close() // closes Receive
	wg.Wait()
	return nil
}

// connect connects the router's mixnet client.
func (s *Service) connect(ctx context.Context) (*client.Client, error) {
	id := s.cfg.Identity
	if id == nil {
		kp, err := client.LoadOrCreateIdentity(s.cfg.IdentityFile)
		if err != nil {
			return nil, fmt.Errorf("exit: router identity: %w", err)
		}
		id = &kp
	}
	mix, err := client.Connect(ctx, client.Config{
		Network:      s.cfg.Network,
		DirectoryURL: s.cfg.DirectoryURL,
		DirectoryKey: s.cfg.DirectoryKey,
		HTTPClient:   s.cfg.HTTPClient,
		Identity:     id,
		Gateway:      s.cfg.Gateway,
		Loopix:       s.cfg.Loopix,
		SURBs:        s.cfg.SURBs,
		DialContext:  s.cfg.DialContext,
		Logger:       s.log,
	})
	if err != nil {
		return nil, fmt.Errorf("exit: connecting the router to gateway %s: %w", s.cfg.Gateway, err)
	}
	return mix, nil
}

// replyBurst is how many replies a paced session's stream sends at once
// after a quiet spell (client.Stream.Pace): the first answers of a page
// load (DNS, handshakes, small responses) need not wait an interval each,
// and the client's gateway queues no more than these beyond its pace.
const replyBurst = 4

// replySource is a session's downstream as the mixnet client pulls it: the
// router writes the next response straight into the packet's buffer.
type replySource struct{ d router.Downstream }

func (r replySource) Pull(p *client.Payload) bool {
	b, ok := r.d.Pull(p.Buf())
	return ok && p.SetData(b) == nil
}

// receive hands every request to the router until the client closes.
// Messages without a sender tag carry no SURBs: nothing could answer them.
func (s *Service) receive(ctx context.Context, mix *client.Client, rt *router.Router) {
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-mix.Receive():
			if !ok {
				return
			}
			if m.SenderTag.IsZero() {
				s.log.Debug("request without reply SURBs dropped")
				continue
			}
			// Never HandleRequest here: one sender's slow replies would
			// hold up every other sender's requests.
			rt.Submit(router.SessionKey(m.SenderTag), m.Data)
		}
	}
}

// readTUN feeds what the internet sends to clients into the router until
// the TUN closes.
func (s *Service) readTUN(dev tun.Device, rt *router.Router) {
	bufs, sizes := tun.NewBatch(dev)
	pkts := make([][]byte, 0, len(bufs))
	for {
		n, err := dev.Read(bufs, sizes)
		if errors.Is(err, os.ErrClosed) || errors.Is(err, tun.ErrShortBuffer) {
			return
		}
		if err != nil { // this read's alone (tun.Device): keep reading
			s.log.Debug("TUN read", "err", err)
		}
		pkts = pkts[:0]
		for i := range n {
			pkts = append(pkts, bufs[i][:sizes[i]])
		}
		if len(pkts) > 0 {
			rt.FromTUN(pkts)
		}
	}
}

// Stats are the service's counters beside the router's.
type Stats struct {
	Router router.Stats
	Client client.Stats
	// ControlTimeouts counts control replies that waited ControlTimeout
	// for the sender's SURBs in vain.
	ControlTimeouts uint64
}

// Stats returns a snapshot; zero before Run has set up.
func (s *Service) Stats() Stats {
	st := Stats{ControlTimeouts: s.controlTimeouts.Load()}
	if r := s.Router(); r != nil {
		st.Router = r.Stats()
	}
	if c := s.Client(); c != nil {
		st.Client = c.Stats()
	}
	return st
}
