package vpn

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nym-go/nym/ipr"
	"github.com/nym-go/nym/mixnet/client"
	"github.com/nym-go/nym/tun"
)

// Errors Run and Connect return or wrap.
var (
	// ErrRefused: the exit refused the session (ConnectFail).
	ErrRefused = errors.New("vpn: the exit refused the session")
	// ErrAddrsChanged: after a reconnect the exit granted other addresses
	// (the session had expired there); the TUN must be set up again.
	ErrAddrsChanged = errors.New("vpn: the exit granted new addresses")
	// ErrTUNClosed: the TUN device stopped reading.
	ErrTUNClosed = errors.New("vpn: TUN device closed")

	errPathDead     = errors.New("vpn: no reply from the exit")
	errGatewayLost  = errors.New("vpn: no connection to the gateway")
	errSessionEnded = errors.New("vpn: the exit ended the session")
	errMixClosed    = errors.New("vpn: mixnet client closed")
	errNetChanged   = errors.New("vpn: the network changed")
)

// Tunnel is one session with an exit's IP packet router. Make it with
// Connect, then call Run once.
type Tunnel struct {
	cfg   Config
	log   *slog.Logger
	nonce [ipr.NonceSize]byte
	reqID atomic.Uint64

	// Set by Connect and by redial, while no pump runs.
	mix    Mixnet
	router client.Address

	addrs       ipr.AddrPair
	mtu         int
	connectedAt time.Time

	up     *upstream
	budget *surbBudget
	reseq  *ipr.Resequencer[[]byte] // the receive loop's alone

	lastSent, lastReply, lastPing atomic.Int64 // unix nanoseconds
	pingID                        atomic.Uint64

	packetsUp, bytesUp, bundlesUp       atomic.Uint64
	surbOnlyUp, mixedUp                 atomic.Uint64 // DataUps by kind: SURBs alone; data beside SURBs
	packetsDown, bytesDown, bundlesDown atomic.Uint64
	tooBig, malformedDown, tunWriteErrs atomic.Uint64
	pings, pongs, reconnects            atomic.Uint64
	lastRTT                             atomic.Int64

	// netChanged holds one NetworkChanged not yet acted on.
	netChanged chan struct{}

	mu      sync.Mutex
	state   State
	reorder ipr.ReorderStats
}

// Connect dials the mixnet through cfg.Dial and opens a session with the
// exit's router. It returns once the router granted addresses: the caller
// sets up its TUN with Addrs and MTU, then calls Run.
func Connect(ctx context.Context, cfg Config) (*Tunnel, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	t := &Tunnel{
		cfg: cfg,
		log: cfg.Logger,
		budget: newSURBBudget(cfg.MinSURBs, cfg.MaxSURBs, stallAfter(cfg.Profile), time.Now()).
			carrying(cfg.Profile.repliesPerSURB()),
		reseq: ipr.NewResequencer[[]byte](ipr.ResequencerConfig{Timeout: cfg.Profile.ReorderTimeout()}),

		netChanged: make(chan struct{}, 1),
	}
	if _, err := rand.Read(t.nonce[:]); err != nil {
		return nil, fmt.Errorf("vpn: session nonce: %w", err)
	}
	t.setState(StateConnecting)
	mix, router, err := cfg.Dial(ctx, 0)
	if err != nil {
		return nil, fmt.Errorf("vpn: connecting the mixnet: %w", err)
	}
	ok, err := t.handshake(ctx, mix, router)
	if err != nil {
		mix.Close()
		return nil, err
	}
	t.mix, t.router = mix, router
	t.addrs = ok.Addrs
	// Upstream packets carry the sender tag without SURBs when they are
	// full, so a bundle holds a packet of RepliablePacketCapacity(0) less
	// the framing; downstream the exit's MTU (from a reply's capacity)
	// applies. The MTU is what fits both ways: 1537 with today's sizes,
	// above IPv6's minimum of 1280.
	t.mtu = min(int(ok.MTU), ipr.MaxIPPacket(mix.ReplyCapacity()), maxUpPacket(mix))
	if t.up, err = newUpstream(t); err != nil {
		mix.Close()
		return nil, err
	}
	t.connectedAt = time.Now()
	t.log.Info("vpn session granted", "v4", ok.Addrs.V4, "v6", ok.Addrs.V6, "mtu", t.mtu, "profile", cfg.Profile.Name)
	return t, nil
}

// stallAfter is how long the exit may hold a backlog without a reply
// arriving before we assume our SURBs were lost: well past the mixing
// delay of a reply.
func stallAfter(p Profile) time.Duration {
	return 500*time.Millisecond + 4*p.ReorderTimeout()
}

// Addrs are the tunnel's addresses, for the TUN.
func (t *Tunnel) Addrs() ipr.AddrPair { return t.addrs }

// MTU is the largest IP packet the tunnel carries, for the TUN.
func (t *Tunnel) MTU() int { return t.mtu }

// State is the tunnel's state now.
func (t *Tunnel) State() State {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.state
}

func (t *Tunnel) setState(s State) {
	t.mu.Lock()
	changed := t.state != s
	t.state = s
	t.mu.Unlock()
	if changed && t.cfg.OnState != nil {
		t.cfg.OnState(s)
	}
}

// Stats returns the tunnel's counters. It is safe to call at any time.
func (t *Tunnel) Stats() Stats {
	given, used, outstanding, backlog, resets := t.budget.snapshot()
	drops, queued := t.up.drops()
	t.mu.Lock()
	st := Stats{State: t.state, Reorder: t.reorder}
	t.mu.Unlock()
	st.Addrs, st.MTU, st.Connected = t.addrs, t.mtu, t.connectedAt
	st.Profile, st.IdleCost = t.cfg.Profile.Name, t.cfg.Profile.IdleCost()
	if !t.connectedAt.IsZero() {
		st.Uptime = time.Since(t.connectedAt)
	}
	st.PacketsUp, st.BytesUp, st.BundlesUp = t.packetsUp.Load(), t.bytesUp.Load(), t.bundlesUp.Load()
	st.BundlesUpSURBsOnly, st.BundlesUpWithSURBs = t.surbOnlyUp.Load(), t.mixedUp.Load()
	st.PacketsDown, st.BytesDown, st.BundlesDown = t.packetsDown.Load(), t.bytesDown.Load(), t.bundlesDown.Load()
	st.SlotsReal, st.SlotsCover = t.up.slots()
	st.QueuedUp, st.QueueDropsSojourn, st.QueueDropsFull = queued, drops.Sojourn, drops.Full
	st.TooBig, st.MalformedDown, st.TUNWriteErrors = t.tooBig.Load(), t.malformedDown.Load(), t.tunWriteErrs.Load()
	st.SURBsSent, st.SURBsUsed, st.SURBsOutstanding, st.Backlog, st.SURBResets = given, used, outstanding, backlog, resets
	st.Pings, st.Pongs, st.Reconnects = t.pings.Load(), t.pongs.Load(), t.reconnects.Load()
	st.LastRTT = time.Duration(t.lastRTT.Load())
	return st
}

// maxUpPacket is the largest IP packet that fits one upstream bundle: a
// tagged packet without SURBs, less the DataUp header and the length prefix.
func maxUpPacket(mix Mixnet) int {
	return mix.RepliablePacketCapacity(0) - ipr.DataUpOverhead - ipr.LengthPrefixSize
}

// maxSURBs is the most SURBs a packet of msgLen bytes can carry beside it,
// at most want and at least least (whether or not they fit: the caller
// sized the message for them).
func maxSURBs(mix Mixnet, msgLen, least, want int) int {
	capNone := mix.RepliablePacketCapacity(0)
	fit := surbsBeside(capNone, capNone-mix.RepliablePacketCapacity(1), msgLen)
	return max(least, min(want, fit))
}

// surbsBeside is how many SURBs of surbSize bytes fit beside msgLen bytes of
// data in a tagged packet that holds capNone without SURBs. The client's
// capacity falls by the same amount for each SURB, so this is computed
// rather than probed.
func surbsBeside(capNone, surbSize, msgLen int) int {
	if surbSize <= 0 || msgLen > capNone {
		return 0
	}
	return (capNone - msgLen) / surbSize
}

// handshake sends Connect (again every ConnectRetry) until the router
// answers.
func (t *Tunnel) handshake(ctx context.Context, mix Mixnet, router client.Address) (*ipr.ConnectOK, error) {
	ctx, cancel := context.WithTimeout(ctx, t.cfg.ConnectTimeout)
	defer cancel()
	first := t.reqID.Load() + 1
	retry := time.NewTimer(0)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("vpn: no answer to Connect from %s: %w", router, ctx.Err())
		case <-retry.C:
			req, err := ipr.MarshalRequest(&ipr.Connect{RequestID: t.reqID.Add(1), Nonce: t.nonce, Want: t.addrs,
				ReplyInterval: t.cfg.Profile.Loopix.ReplyInterval()}) // the exit paces our replies to our shaped downstream
			if err != nil {
				return nil, fmt.Errorf("vpn: encoding Connect: %w", err)
			}
			n := maxSURBs(mix, len(req), 1, t.cfg.ConnectSURBs)
			if err := mix.SendRepliablePacket(ctx, router, req, n); err != nil {
				return nil, fmt.Errorf("vpn: sending Connect to %s: %w", router, err)
			}
			t.budget.gave(n)
			retry.Reset(t.cfg.ConnectRetry)
		case m, ok := <-mix.Receive():
			if !ok {
				return nil, errMixClosed
			}
			if !m.IsReply || m.From != router {
				continue
			}
			resp, err := ipr.ParseResponse(m.Data)
			t.budget.replied(-1, time.Now())
			if err != nil {
				t.malformedDown.Add(1)
				continue
			}
			switch r := resp.(type) {
			case *ipr.ConnectOK:
				if r.RequestID >= first {
					return r, nil
				}
			case *ipr.ConnectFail:
				if r.RequestID >= first {
					return nil, fmt.Errorf("%w: %s", ErrRefused, r.Reason)
				}
			case *ipr.Info:
				if r.Code == ipr.InfoVersionMismatch {
					return nil, fmt.Errorf("%w: %s", ErrRefused, r.Text)
				}
			}
		}
	}
}

// NetworkChanged tells the tunnel that the host's uplink came back or
// changed (a new address or gateway): a connection to the gateway made
// through the old one may be dead without anything saying so, and a
// redial waiting out its backoff would wait for nothing. A connected
// tunnel moves to a new path now; a reconnecting one tries again now. It
// does not block; calls while one is pending count once.
func (t *Tunnel) NetworkChanged() {
	select {
	case t.netChanged <- struct{}{}:
	default:
	}
}

// Run pumps packets between dev and the exit until ctx ends, reconnecting
// when the path dies. It owns dev and the mixnet client from then on and
// closes both before it returns; on ctx's end it tells the exit goodbye
// and returns nil. Other errors: ErrAddrsChanged, ErrTUNClosed, or a
// refusal by the exit.
func (t *Tunnel) Run(ctx context.Context, dev tun.Device) error {
	defer t.setState(StateClosed)
	t.setState(StateConnected)
	readerDone := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		readerDone <- t.readTUN(dev)
	}()
	defer func() {
		dev.Close() // unblocks the reader
		wg.Wait()
	}()
	for {
		err := t.pump(ctx, dev, readerDone)
		if ctx.Err() != nil {
			t.goodbye()
			t.mix.Close()
			return nil
		}
		if errors.Is(err, ErrTUNClosed) {
			t.mix.Close()
			return err
		}
		t.log.Warn("vpn path lost; reconnecting", "err", err)
		if err := t.redial(ctx, errors.Is(err, errSessionEnded)); err != nil {
			t.mix.Close()
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

// pump opens the upstream stream on the current mixnet client and runs the
// receive loop and the watchdog until one fails or ctx ends. Upstream there
// is no loop of ours: the client pulls DataUps from t.up at its own pace.
func (t *Tunnel) pump(ctx context.Context, dev tun.Device, readerDone <-chan error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	t.up.setMixnet(t.mix)
	now := time.Now().UnixNano()
	t.lastReply.Store(now)
	t.lastSent.Store(now)
	stream, err := t.mix.OpenStream(t.router, t.up)
	if err != nil {
		return fmt.Errorf("vpn: opening the upstream: %w", err)
	}
	t.up.setStream(stream)
	defer func() {
		t.up.setStream(nil)
		stream.Close() // drops a DataUp built ahead: its seq is a gap the exit's resequencer skips
	}()
	stream.Wake() // packets may have queued while the path was down; the exit needs SURBs
	var wg sync.WaitGroup
	for _, loop := range []func(context.Context) error{func(ctx context.Context) error { return t.recvLoop(ctx, dev) }, t.watchdog} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := loop(ctx); err != nil {
				cancel(err)
			}
		}()
	}
	select {
	case <-ctx.Done():
	case err := <-readerDone:
		cancel(fmt.Errorf("%w: %v", ErrTUNClosed, err))
	case <-t.netChanged:
		cancel(errNetChanged)
	}
	wg.Wait()
	return context.Cause(ctx)
}

// redial gets a working path again: first the same mixnet client when only
// the session ended, else fresh ones from the dialer, with backoff.
func (t *Tunnel) redial(ctx context.Context, sameMix bool) error {
	t.setState(StateReconnecting)
	t.reconnects.Add(1)
	wait := t.cfg.RedialMin
	for attempt := 1; ; attempt++ {
		err := t.tryRedialUntilChange(ctx, attempt, sameMix && attempt == 1)
		if err == nil {
			t.setState(StateConnected)
			return nil
		}
		if errors.Is(err, ErrAddrsChanged) || errors.Is(err, ErrRefused) {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, errNetChanged) {
			// The attempt went out by an uplink that is gone or
			// changed: try the new one now, from the shortest wait.
			t.log.Info("vpn reconnect: the network changed; trying again now", "attempt", attempt)
			wait = t.cfg.RedialMin
			continue
		}
		t.log.Warn("vpn reconnect failed", "attempt", attempt, "err", err, "retry_in", wait)
		backoff := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			backoff.Stop()
			return ctx.Err()
		case <-t.netChanged:
			// A route came back or changed: no point waiting out a
			// backoff that was for the network before.
			backoff.Stop()
			wait = t.cfg.RedialMin
			continue
		case <-backoff.C:
		}
		wait = min(2*wait, t.cfg.RedialMax)
	}
}

// tryRedialUntilChange is tryRedial, cut short (errNetChanged) when the
// network changes meanwhile: a dial through the old uplink may hang until
// its own timeout.
func (t *Tunnel) tryRedialUntilChange(ctx context.Context, attempt int, sameMix bool) error {
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		select {
		case <-t.netChanged:
			cancel(errNetChanged)
		case <-stop:
		}
	})
	err := t.tryRedial(actx, attempt, sameMix)
	close(stop)
	wg.Wait()
	if errors.Is(context.Cause(actx), errNetChanged) {
		if err == nil {
			// Through in spite of the change, perhaps by the old
			// uplink just before it went: let the pump move again.
			t.NetworkChanged()
			return nil
		}
		return fmt.Errorf("%w (%v)", errNetChanged, err)
	}
	return err
}

func (t *Tunnel) tryRedial(ctx context.Context, attempt int, sameMix bool) error {
	if !sameMix {
		t.mix.Close()
		mix, router, err := t.cfg.Dial(ctx, attempt)
		if err != nil {
			return fmt.Errorf("vpn: dialing the mixnet: %w", err)
		}
		if router != t.router {
			mix.Close()
			return fmt.Errorf("vpn: dialer named router %s, the session is at %s", router, t.router)
		}
		t.mix = mix
	}
	// SURBs given under the old sender tag are gone with it.
	t.budget.low()
	ok, err := t.handshake(ctx, t.mix, t.router)
	if err != nil {
		return err
	}
	if ok.Addrs != t.addrs {
		return fmt.Errorf("%w: %s, had %s", ErrAddrsChanged, ok.Addrs, t.addrs)
	}
	t.log.Info("vpn session moved to a new path", "attempt", attempt)
	return nil
}

// Close ends a tunnel that will not be Run (its device could not be set
// up): it tells the exit goodbye and closes the mixnet client. A tunnel
// that is Run is closed by ending Run's context instead.
func (t *Tunnel) Close() error {
	t.goodbye()
	t.setState(StateClosed)
	return t.mix.Close()
}

// goodbye tells the exit the session is over, so it frees the addresses
// now rather than after its idle timeout.
func (t *Tunnel) goodbye() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	msg, err := ipr.MarshalRequest(&ipr.Disconnect{})
	if err != nil {
		return
	}
	// No SURBs: the exit does not answer a Disconnect.
	if err := t.mix.SendRepliablePacket(ctx, t.router, msg, 0); err != nil {
		t.log.Debug("vpn disconnect not sent", "err", err)
		return
	}
	// The Poisson stream may hold it for a moment: wait for it to leave.
	if f, ok := t.mix.(interface{ Flush(context.Context) error }); ok {
		_ = f.Flush(ctx)
	}
}
