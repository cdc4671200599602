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

	"github.com/nym-go/nym/ipr"
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
	router *ipr.Router
	mix    *client.Client

	repliesFailed atomic.Uint64
	lowSURBInfos  atomic.Uint64

	lowMu   sync.Mutex
	lastLow map[ipr.SessionKey]time.Time // last low-SURB Info per session
}

// New checks cfg and returns a Service. Nothing is opened before Run.
func New(cfg Config) (*Service, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	return &Service{cfg: cfg, log: cfg.Logger.With("component", "ip-router")}, nil
}

// Router is the running router, nil before Run has set it up.
func (s *Service) Router() *ipr.Router {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.router
}

// Client is the router's mixnet client, nil before Run has connected it.
func (s *Service) Client() *client.Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mix
}

// Run connects the router's mixnet client to the node's gateway, sets up
// the TUN and the exit networking, and routes until ctx ends. On return the
// sessions are told, the TUN is gone and the host's networking is restored.
func (s *Service) Run(ctx context.Context) error {
	if !HasNetAdmin() {
		return ErrNotPrivileged
	}
	id := s.cfg.Identity
	if id == nil {
		kp, err := client.LoadOrCreateIdentity(s.cfg.IdentityFile)
		if err != nil {
			return fmt.Errorf("exit: router identity: %w", err)
		}
		id = &kp
	}
	mix, err := client.Connect(ctx, client.Config{
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
		return fmt.Errorf("exit: connecting the router to gateway %s: %w", s.cfg.Gateway, err)
	}
	defer mix.Close()

	capacity := mix.ReplyCapacity()
	mtu := ipr.MaxIPPacket(capacity)
	var host *hostNet
	var own []netip.Addr
	if err := s.cfg.InNetNS(func() error {
		var err error
		if host, err = openHostNet(&s.cfg, mtu); err != nil {
			return err
		}
		if own, err = hostAddrs(); err != nil {
			host.close()
			return fmt.Errorf("exit: the host's addresses: %w", err)
		}
		return nil
	}); err != nil {
		return err
	}
	defer func() {
		if err := host.close(); err != nil {
			s.log.Error("restoring the exit's networking", "err", err)
		}
	}()

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var down *downstream
	rcfg := s.cfg.Router
	rcfg.PayloadCapacity = capacity
	rcfg.TUN = host.dev
	hasSURB := func(key ipr.SessionKey) bool { return mix.ReplySURBs(client.AnonymousSenderTag(key)) > 0 }
	rcfg.CanReply = hasSURB
	rcfg.Reply = func(key ipr.SessionKey, resp []byte) error {
		// Control replies run on the sender's own worker (Submit), and
		// the router asked CanReply first; the timeout only bounds a
		// race for the last SURB.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(runCtx), s.cfg.ControlTimeout)
		defer cancel()
		return mix.Reply(rctx, client.AnonymousSenderTag(key), resp)
	}
	rcfg.Ready = func(key ipr.SessionKey) { down.kick(key) }
	flusher := newConntrackFlusher(host.flushConntrack, s.log)
	rcfg.Released = flusher.released
	rcfg.Policy = routerPolicy(s.cfg.Policy, s.cfg.AllowPrivate, own)
	router, err := ipr.New(rcfg)
	if err != nil {
		return fmt.Errorf("exit: router: %w", err)
	}
	down = newDownstream(runCtx, router.NextBundle, s.sendBundle, hasSURB, s.cfg.RetryInterval)
	s.mu.Lock()
	s.router, s.mix = router, mix
	s.mu.Unlock()
	s.log.Info("IP packet router up", "address", mix.Address(), "tun", host.dev.Name(), "mtu", mtu)

	var wg sync.WaitGroup
	wg.Go(func() { router.Run(runCtx) })
	wg.Go(func() { flusher.run(runCtx) })
	wg.Go(down.run)
	wg.Go(func() { s.readTUN(host.dev, router) })
	wg.Go(func() { s.receive(runCtx, mix, router) })

	<-ctx.Done()
	// Tell the clients while the mixnet client still runs, and give the
	// goodbyes a moment to leave.
	router.Shutdown()
	fctx, fcancel := context.WithTimeout(context.Background(), time.Second)
	_ = mix.Flush(fctx)
	fcancel()
	cancel()
	host.dev.Close() // unblocks readTUN
	mix.Close()      // closes Receive
	wg.Wait()
	return nil
}

// sendBundle sends one downstream Data message through one SURB. A reply
// that had to wait for SURBs means the client's supply ran dry: it hears so
// in an Info (at most one per InfoInterval), so it sends more with its next
// packets.
func (s *Service) sendBundle(ctx context.Context, key ipr.SessionKey, msg []byte) error {
	mix := s.Client()
	rctx, cancel := context.WithTimeout(ctx, s.cfg.ReplyWait)
	defer cancel()
	start := time.Now()
	if err := mix.Reply(rctx, client.AnonymousSenderTag(key), msg); err != nil {
		s.repliesFailed.Add(1)
		s.log.Debug("downstream bundle dropped", "session", key, "err", err)
		return err
	}
	if time.Since(start) > lowSURBWait {
		s.lowSURBs(ctx, key, mix)
	}
	return nil
}

func (s *Service) lowSURBs(ctx context.Context, key ipr.SessionKey, mix *client.Client) {
	now := time.Now()
	interval := s.cfg.Router.InfoInterval
	if interval <= 0 {
		interval = ipr.DefaultInfoInterval
	}
	if !s.mayInfoLow(key, now, interval) {
		return
	}
	msg, err := ipr.MarshalResponse(&ipr.Info{Code: ipr.InfoLowSURBs})
	if err != nil {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, s.cfg.ControlTimeout)
	defer cancel()
	if mix.Reply(rctx, client.AnonymousSenderTag(key), msg) == nil {
		s.lowSURBInfos.Add(1)
	}
}

// maxLowInfoEntries bounds the low-SURB Info record: entries older than
// the Info interval say nothing and are pruned when it fills.
const maxLowInfoEntries = 4096

func (s *Service) mayInfoLow(key ipr.SessionKey, now time.Time, interval time.Duration) bool {
	s.lowMu.Lock()
	defer s.lowMu.Unlock()
	if s.lastLow == nil {
		s.lastLow = make(map[ipr.SessionKey]time.Time)
	}
	if last, ok := s.lastLow[key]; ok && now.Sub(last) < interval {
		return false
	}
	if len(s.lastLow) >= maxLowInfoEntries {
		for k, t := range s.lastLow {
			if now.Sub(t) >= interval {
				delete(s.lastLow, k)
			}
		}
	}
	s.lastLow[key] = now
	return true
}

// receive hands every request to the router until the client closes.
// Messages without a sender tag carry no SURBs: nothing could answer them.
func (s *Service) receive(ctx context.Context, mix *client.Client, router *ipr.Router) {
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
			router.Submit(ipr.SessionKey(m.SenderTag), m.Data)
		}
	}
}

// readTUN feeds what the internet sends to clients into the router until
// the TUN closes.
func (s *Service) readTUN(dev tun.Device, router *ipr.Router) {
	bufs, sizes := tun.NewBatch(dev)
	pkts := make([][]byte, 0, len(bufs))
	for {
		n, err := dev.Read(bufs, sizes)
		if errors.Is(err, os.ErrClosed) || errors.Is(err, tun.ErrShortBuffer) {
			return
		}
		if err != nil {
			s.log.Debug("TUN read", "err", err)
			if n == 0 {
				time.Sleep(time.Millisecond) // no busy loop on a repeating error
			}
		}
		pkts = pkts[:0]
		for i := range n {
			pkts = append(pkts, bufs[i][:sizes[i]])
		}
		if len(pkts) > 0 {
			router.FromTUN(pkts)
		}
	}
}

// Stats are the service's counters beside the router's.
type Stats struct {
	Router        ipr.Stats
	Client        client.Stats
	RepliesFailed uint64 // downstream bundles dropped for want of SURBs
	LowSURBInfos  uint64 // low-SURB Infos sent
}

// Stats returns a snapshot; zero before Run has set up.
func (s *Service) Stats() Stats {
	st := Stats{RepliesFailed: s.repliesFailed.Load(), LowSURBInfos: s.lowSURBInfos.Load()}
	if r := s.Router(); r != nil {
		st.Router = r.Stats()
	}
	if c := s.Client(); c != nil {
		st.Client = c.Stats()
	}
	return st
}
