package router

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/nym-go/nym/codel"
	"github.com/nym-go/nym/ipr"
	"github.com/nym-go/nym/tun/icmperr"
)

// TUN is where the router writes client packets bound for the internet: the
// exit's nymtun0. Write must not keep the slices it is given.
type TUN interface {
	Write(pkts [][]byte) error
}

// Defaults for zero Config fields.
const (
	DefaultIdleTimeout     = 60 * time.Second // Nym's CLIENT_MIXNET_INACTIVITY_TIMEOUT
	DefaultQueueTarget     = 50 * time.Millisecond
	DefaultQueueInterval   = 500 * time.Millisecond
	DefaultMaxQueuePackets = 1024
	DefaultMaxQueueBytes   = 512 << 10
	DefaultInfoInterval    = time.Second
	DefaultTickInterval    = 10 * time.Millisecond
	DefaultAddrQuarantine  = 2 * time.Minute
	// DefaultMaxAddrsPerSender: a session, and room for a few
	// reconnects with a fresh nonce within one quarantine.
	DefaultMaxAddrsPerSender = 4

	// idleCheckInterval spaces the idle scans of all sessions; an idle
	// session lives at most this much past its timeout.
	idleCheckInterval = time.Second
)

// Config configures a Router. Zero fields take the documented defaults.
type Config struct {
	// PayloadCapacity is the message bytes one reply packet carries, as the
	// mixnet client reports it. It sizes the downstream bundles and the MTU
	// the router tells clients (MaxIPPacket). Required.
	PayloadCapacity int
	// TUN takes client packets for the internet. Required.
	TUN TUN
	// Reply sends a control response (ConnectOK, Pong, Info, …) to a
	// session at once. It is called without locks held but from the
	// caller of HandleRequest, FromTUN or Tick, so it should not block for
	// long. Required.
	Reply func(session SessionKey, resp []byte) error
	// CanReply, when set, reports whether the session holds reply SURBs
	// now. A sender without any may still be answered when the top-up it
	// was asked for arrives, and the router waits for that, on the
	// sender's own worker (Submit), once: when that reply fails, the
	// sender is starved, and its requests that need an answer (Connect,
	// Ping) are dropped and counted instead of waiting again, until it
	// has SURBs. A flood of them must hold up nobody, the sender included.
	CanReply func(session SessionKey) bool
	// OpenStream, when set, opens the transport's stream for a session's
	// downstream data under sender tag key, when the session starts or
	// moves to key. The stream pulls from d (Downstream.Pull) whenever it
	// can send one response, and reports when it cannot for want of SURBs
	// (Downstream.Starved); the router wakes it when the session's queue
	// stops being empty and closes it when the session ends or moves on.
	// An error leaves the session without a downstream (counted in
	// Stats.StreamsFailed). Called without locks held. Nil: nothing pulls,
	// and queued packets age out.
	OpenStream func(key SessionKey, d Downstream) (Stream, error)
	// Policy, when set, is asked about every client packet before it goes
	// to the TUN; refusals are dropped, counted and reported to the client
	// in an Info. It is called with the session locked, so it must be
	// quick and must not call the Router.
	// Nil allows everything (the nftables rules in platform still apply).
	Policy func(dst netip.AddrPort, proto uint8) (allowed bool, reason string)
	// Pool hands out client addresses; nil means NewAddrPool().
	Pool *AddrPool
	// AddrQuarantine keeps a released address pair out of use for this
	// long, so that nothing of its last session (conntrack entries,
	// replies in flight) reaches the next one; the same client may take
	// it back meanwhile. Default DefaultAddrQuarantine.
	AddrQuarantine time.Duration
	// MaxAddrsPerSender bounds the address pairs one sender tag holds:
	// its session's and those its ended sessions left in quarantine.
	// Beyond it a Connect is refused, so that no sender can empty the
	// pool by connecting and disconnecting. Default
	// DefaultMaxAddrsPerSender.
	MaxAddrsPerSender int
	// Released, when set, is told of every pair a session gave back (the
	// exit flushes its conntrack entries). It is called with the router's
	// lock held: it must not block or call the Router.
	Released func(ipr.AddrPair)

	// IdleTimeout ends a session that sent no request for this long.
	// Default DefaultIdleTimeout.
	IdleTimeout time.Duration
	// Reorder bounds the upstream resequencing; a negative Timeout turns
	// resequencing off (bundles go to the TUN as they arrive).
	Reorder ipr.ResequencerConfig
	// QueueTarget and QueueInterval are CoDel's target sojourn time and
	// interval for each session's downstream queue. The target is a few
	// Poisson send intervals (20 ms each at Nym's rate): a packet that
	// waits longer stands in a queue that only slows its flow down. The
	// interval is about the tunnel's round trip time. Defaults 50 ms and
	// 500 ms.
	QueueTarget, QueueInterval time.Duration
	// MaxQueuePackets and MaxQueueBytes hard-limit each downstream queue.
	// Defaults 1024 packets and 512 KiB.
	MaxQueuePackets, MaxQueueBytes int
	// InfoInterval is the least time between two policy-refusal Infos to
	// one session: each Info spends one of the client's SURBs. Default 1 s.
	InfoInterval time.Duration
	// TickInterval is how often Run calls Tick: the resolution of the
	// resequencer's gap timeout. Default 10 ms.
	TickInterval time.Duration
	// MaxSenderRequests bounds the requests of one sender waiting for
	// its worker (Submit); MaxPendingRequests bounds them for all senders.
	// Beyond either, requests are dropped and counted. Defaults 1024 and
	// 16384.
	MaxSenderRequests, MaxPendingRequests int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() (Config, error) {
	if c.TUN == nil || c.Reply == nil {
		return c, errors.New("router: config needs a TUN and a Reply callback")
	}
	if mtu := ipr.MaxIPPacket(c.PayloadCapacity); mtu < minIPv4MTU {
		return c, fmt.Errorf("router: payload capacity %d leaves an MTU of %d, below IPv4's minimum %d", c.PayloadCapacity, mtu, minIPv4MTU)
	}
	if c.Pool == nil {
		c.Pool = NewAddrPool()
	}
	setDefault(&c.IdleTimeout, DefaultIdleTimeout)
	setDefault(&c.QueueTarget, DefaultQueueTarget)
	setDefault(&c.QueueInterval, DefaultQueueInterval)
	setDefault(&c.MaxQueuePackets, DefaultMaxQueuePackets)
	setDefault(&c.MaxQueueBytes, DefaultMaxQueueBytes)
	setDefault(&c.InfoInterval, DefaultInfoInterval)
	setDefault(&c.TickInterval, DefaultTickInterval)
	setDefault(&c.AddrQuarantine, DefaultAddrQuarantine)
	setDefault(&c.MaxAddrsPerSender, DefaultMaxAddrsPerSender)
	setDefault(&c.MaxSenderRequests, DefaultMaxSenderRequests)
	setDefault(&c.MaxPendingRequests, DefaultMaxPendingRequests)
	if c.Now == nil {
		c.Now = time.Now
	}
	return c, nil
}

// minIPv4MTU is the least MTU every IPv4 host must accept (RFC 791).
const minIPv4MTU = 68

func setDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// Router keeps the sessions of an exit's VPN clients. Its methods are safe
// for concurrent use.
type Router struct {
	cfg       Config
	mtu       int
	bundleCap int // bytes of bundle in one downstream Data message
	stats     counters
	// tooBig answers packets from the TUN too big for a bundle, so the
	// internet host learns the path MTU rather than retransmitting into a
	// black hole.
	tooBig *icmperr.Responder

	mu       sync.RWMutex
	sessions map[SessionKey]*session
	byNonce  map[[ipr.NonceSize]byte]*session
	byAddr   map[netip.Addr]*session

	// gapped holds the sessions with upstream messages waiting behind a
	// gap, so Tick need not visit every session every few milliseconds.
	// Lock order: Router.mu, then session.mu, then gapMu.
	gapMu  sync.Mutex
	gapped map[*session]struct{}

	tickMu        sync.Mutex // one Tick at a time
	nextIdleCheck time.Time

	dispatch dispatcher // Submit's per-sender workers
	bufs     bufPool    // the queued packets' buffers

	starvedMu sync.Mutex
	starved   map[SessionKey]time.Time // senders whose reply failed without SURBs, since when
}

// New returns a Router.
func New(cfg Config) (*Router, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	cfg.Pool.SetQuarantine(cfg.AddrQuarantine)
	r := &Router{
		cfg:       cfg,
		mtu:       ipr.MaxIPPacket(cfg.PayloadCapacity),
		bundleCap: cfg.PayloadCapacity - ipr.DataDownOverhead,
		sessions:  make(map[SessionKey]*session),
		byNonce:   make(map[[ipr.NonceSize]byte]*session),
		byAddr:    make(map[netip.Addr]*session),
		gapped:    make(map[*session]struct{}),
		dispatch:  dispatcher{queues: make(map[SessionKey]*requestQueue)},
		starved:   make(map[SessionKey]time.Time),
		// The errors go from the client's address, not from RouterIPv4:
		// the exit's kernel drops a packet that arrives on nymtun0 from
		// nymtun0's own address as a martian source.
		tooBig: icmperr.NewResponder(netip.Addr{}, netip.Addr{}, icmperr.DefaultRate, icmperr.DefaultBurst),
	}
	r.bufs = newBufPool(r.bundleCap)
	if _, err := codel.NewFQ(r.queueConfig()); err != nil {
		return nil, fmt.Errorf("router: session queue: %w", err)
	}
	return r, nil
}

// queueConfig is the configuration of every session's downstream queue:
// flow queueing with CoDel per flow, so that a ping or a DNS answer does
// not wait behind a download (codel.FQ). One dequeue opportunity carries a
// bundle: with no more than that queued, a flow is no standing queue. What
// the queue drops goes back to the buffer pool.
func (r *Router) queueConfig() codel.FQConfig {
	return codel.FQConfig{Config: codel.Config{
		Target:     r.cfg.QueueTarget,
		Interval:   r.cfg.QueueInterval,
		MaxPacket:  r.bundleCap,
		MaxPackets: r.cfg.MaxQueuePackets,
		MaxBytes:   r.cfg.MaxQueueBytes,
		Release:    r.bufs.put,
	}}
}

// newQueue returns a session's downstream queue; New checked its
// configuration.
func (r *Router) newQueue() *codel.FQ {
	q, err := codel.NewFQ(r.queueConfig())
	if err != nil {
		panic(err) // New refused this configuration
	}
	return q
}

// MTU is the largest IP packet the router carries to clients; ConnectOK
// tells them.
func (r *Router) MTU() int { return r.mtu }

// Stats returns the router's counters.
func (r *Router) Stats() Stats {
	st := r.stats.snapshot()
	r.mu.RLock()
	st.Sessions = len(r.sessions)
	for _, s := range r.sessions {
		s.mu.Lock()
		st.Queued += s.down.Len()
		s.mu.Unlock()
	}
	r.mu.RUnlock()
	return st
}

// SessionAddrs returns the addresses of a session.
func (r *Router) SessionAddrs(key SessionKey) (ipr.AddrPair, bool) {
	if s := r.lookup(key); s != nil {
		return s.addrs, true
	}
	return ipr.AddrPair{}, false
}

// Run calls Tick every TickInterval until ctx is done; the caller owns the
// goroutine it runs on. It returns ctx's error.
func (r *Router) Run(ctx context.Context) error {
	t := time.NewTicker(r.cfg.TickInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			r.Tick(r.cfg.Now())
		}
	}
}

// HandleRequest handles one request payload from a session and returns when
// it is done, replies included: a transport that serves many senders calls
// Submit instead. The router owns msg from then on: upstream bundles may
// wait in the resequencer.
func (r *Router) HandleRequest(key SessionKey, msg []byte) {
	r.stats.requestsIn.Add(1)
	now := r.cfg.Now()
	req, err := ipr.ParseRequest(msg)
	if err != nil {
		r.stats.badRequests.Add(1)
		if errors.Is(err, ipr.ErrVersion) {
			r.reply(key, &ipr.Info{Code: ipr.InfoVersionMismatch, Text: fmt.Sprintf("this router speaks version %d", ipr.ProtocolVersion)})
		}
		return
	}
	switch req.(type) {
	case *ipr.Connect, *ipr.Ping:
		// Nothing will carry the answer: drop the request rather than
		// do its work (a Connect would take an address) or wait for
		// SURBs that did not come last time.
		if !r.canReply(key, now) {
			r.stats.requestsNoSURB.Add(1)
			return
		}
	}
	switch req := req.(type) {
	case *ipr.Connect:
		r.connect(key, req, now)
	case *ipr.Disconnect:
		var st Stream
		r.mu.Lock()
		if s := r.sessions[key]; s != nil {
			st = r.endLocked(s)
			r.stats.sessionsClosed.Add(1)
		}
		r.mu.Unlock()
		closeStreams([]Stream{st})
	case *ipr.Ping:
		// A Ping needs no session: clients use it to test the router
		// before connecting. It keeps a session alive like any request.
		if s := r.lookup(key); s != nil {
			s.touch(now)
		}
		r.reply(key, &ipr.Pong{ID: req.ID})
	case *ipr.DataUp:
		r.dataUp(key, req, now)
	}
}

// connect answers a Connect: the sender's own session again, a session
// moved to this sender by its nonce, or a new one.
func (r *Router) connect(key SessionKey, c *ipr.Connect, now time.Time) {
	resp, opened, old := r.connectLocked(key, c, now)
	if _, failed := resp.(*ipr.ConnectFail); failed {
		r.stats.connectsRefused.Add(1)
	}
	closeStreams([]Stream{old})
	if opened != nil {
		r.openStream(opened, key)
	}
	r.reply(key, resp)
}

// connectLocked answers a Connect. It returns the session that needs a
// stream under key, if any, and the stream a moved session leaves behind,
// both for the caller to handle once the lock is released.
func (r *Router) connectLocked(key SessionKey, c *ipr.Connect, now time.Time) (_ ipr.Response, opened *session, old Stream) {
	if c.Nonce == ([ipr.NonceSize]byte{}) {
		// A zero nonce is no secret: anyone could take such a session over.
		return &ipr.ConnectFail{RequestID: c.RequestID, Reason: ipr.FailOther}, nil, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := r.sessions[key]; s != nil {
		if s.nonce != c.Nonce {
			return &ipr.ConnectFail{RequestID: c.RequestID, Reason: ipr.FailAlreadyConnected}, nil, nil
		}
		s.touch(now) // a retry whose ConnectOK was lost
		return r.connectOK(c, s), nil, nil
	}
	if s := r.byNonce[c.Nonce]; s != nil {
		// The same client under a new sender tag (its mixnet client
		// restarted, say): the nonce proves it. It keeps its addresses,
		// its queue and its sequence numbers; its replies go under the
		// new tag, on a new stream.
		s.mu.Lock()
		delete(r.sessions, s.key)
		s.key = key
		s.lastSeen = now
		s.replyInterval = replyIntervalOf(c)
		old = s.takeStream()
		s.mu.Unlock()
		r.sessions[key] = s
		r.stats.sessionsMoved.Add(1)
		return r.connectOK(c, s), s, old
	}
	addrs, err := r.allocate(key, c, now)
	if err != nil {
		return &ipr.ConnectFail{RequestID: c.RequestID, Reason: ipr.FailNoFreeAddress}, nil, nil
	}
	s := &session{
		key:      key,
		nonce:    c.Nonce,
		addrs:    addrs,
		lastSeen: now,
		down:     r.newQueue(),

		replyInterval: replyIntervalOf(c),
	}
	if r.cfg.Reorder.Timeout >= 0 {
		s.up = ipr.NewResequencer[[]byte](r.cfg.Reorder)
	}
	r.sessions[key] = s
	r.byNonce[c.Nonce] = s
	r.byAddr[addrs.V4] = s
	r.byAddr[addrs.V6] = s
	r.stats.sessionsOpened.Add(1)
	return r.connectOK(c, s), s, nil
}

// allocate gives a new session the pair it wants if that was its own (a
// reconnect after its session ended), else any free pair, unless the sender
// already holds its share.
func (r *Router) allocate(key SessionKey, c *ipr.Connect, now time.Time) (ipr.AddrPair, error) {
	if c.Want.V4.IsValid() || c.Want.V6.IsValid() {
		if addrs, err := r.cfg.Pool.Claim(c.Want, c.Nonce, now); err == nil {
			return addrs, nil
		}
		r.stats.wantRefused.Add(1)
	}
	if _, mine := r.cfg.Pool.Quarantined(key, now); mine+1 > r.cfg.MaxAddrsPerSender {
		r.stats.connectsOverCap.Add(1)
		return ipr.AddrPair{}, fmt.Errorf("router: sender %v holds %d addresses in quarantine", key, mine)
	}
	return r.cfg.Pool.Allocate(now)
}

func (r *Router) connectOK(c *ipr.Connect, s *session) *ipr.ConnectOK {
	return &ipr.ConnectOK{RequestID: c.RequestID, Addrs: s.addrs, MTU: uint16(r.mtu)}
}

// dataUp writes a Data request's packets to the TUN, in sequence order.
func (r *Router) dataUp(key SessionKey, d *ipr.DataUp, now time.Time) {
	s := r.lookup(key)
	if s == nil {
		r.stats.dataNoSession.Add(1)
		if r.canReply(key, now) {
			r.reply(key, &ipr.UnrequestedDisconnect{Reason: ipr.ReasonNotConnected})
		} else {
			r.stats.requestsNoSURB.Add(1)
		}
		return
	}
	r.stats.bundlesUp.Add(1)
	var info *ipr.Info
	s.mu.Lock()
	if !s.closed {
		s.lastSeen = now
		out := s.batch[:0]
		release := func(bundle []byte) { out = r.filterUp(s, bundle, out, &info) }
		if s.up == nil {
			release(d.Bundle)
		} else {
			before := s.up.Stats()
			s.up.Push(d.Seq, d.Bundle, now, release)
			r.stats.addReorder(s.up.Stats().Sub(before))
			r.markGapped(s)
		}
		r.writeTUN(s, out)
		if info != nil && now.Sub(s.lastInfo) < r.cfg.InfoInterval {
			info = nil
		} else if info != nil {
			s.lastInfo = now
			r.stats.policyInfosSent.Add(1)
		}
	}
	s.mu.Unlock()
	if info != nil {
		r.reply(key, info)
	}
}

// filterUp splits one upstream bundle and appends to out the packets that
// may go to the internet: well-formed, from the session's own address, and
// allowed by the policy. Each packet's headers are parsed once, by the
// split. A refusal is noted in *info. s.mu is held.
func (r *Router) filterUp(s *session, bundle []byte, out [][]byte, info **ipr.Info) [][]byte {
	malformed := ipr.WalkBundle(bundle, func(pkt []byte, h ipr.Header) {
		if !s.ownsSource(h.Src) {
			r.stats.drop(DropSpoofed, 1)
			return
		}
		if r.cfg.Policy != nil {
			dst := netip.AddrPortFrom(h.Dst, h.DstPort)
			if ok, reason := r.cfg.Policy(dst, h.Proto); !ok {
				r.stats.drop(DropPolicy, 1)
				r.stats.policyRefusals.Add(1)
				*info = &ipr.Info{Code: ipr.InfoPolicyRefused, Dest: dst, Proto: h.Proto, Text: reason}
				return
			}
		}
		out = append(out, pkt)
	})
	r.stats.drop(DropMalformed, malformed)
	return out
}

// writeTUN writes packets and counts them. Called with the session locked,
// so one session's packets reach the TUN in the order they were released;
// pkts is the session's batch, kept for the next request.
func (r *Router) writeTUN(s *session, pkts [][]byte) {
	if len(pkts) > 0 {
		if err := r.cfg.TUN.Write(pkts); err != nil {
			r.stats.drop(DropTUNWrite, len(pkts))
		} else {
			var n int
			for _, p := range pkts {
				n += len(p)
			}
			r.stats.packetsUp.Add(uint64(len(pkts)))
			r.stats.bytesUp.Add(uint64(n))
		}
	}
	clear(pkts) // do not keep the messages alive through the batch
	s.batch = pkts[:0]
}

// markGapped keeps the gapped set in step with the session's resequencer.
// s.mu is held.
func (r *Router) markGapped(s *session) {
	r.gapMu.Lock()
	if s.up != nil && s.up.Buffered() > 0 && !s.closed {
		r.gapped[s] = struct{}{}
	} else {
		delete(r.gapped, s)
	}
	r.gapMu.Unlock()
}

// FromTUN queues packets read from the TUN for the sessions they are
// addressed to. The packets are copied: the caller may reuse its buffers.
func (r *Router) FromTUN(pkts [][]byte) {
	now := r.cfg.Now()
	targets := make([]*session, len(pkts))
	r.mu.RLock()
	for i, pkt := range pkts {
		h, err := ipr.ParseHeader(pkt)
		if err != nil {
			r.stats.drop(DropMalformed, 1)
			continue
		}
		if targets[i] = r.byAddr[h.Dst]; targets[i] == nil {
			r.stats.drop(DropNoSession, 1)
		}
	}
	r.mu.RUnlock()

	var wake []Stream
	for i, s := range targets {
		if s == nil {
			continue
		}
		pkt := pkts[i]
		if len(pkt)+ipr.LengthPrefixSize > r.bundleCap {
			// The exit's TUN MTU is MaxIPPacket, so the kernel answers
			// such packets with ICMP "too big" before they get here; this
			// only catches a TUN set up otherwise, and answers as the
			// kernel would.
			r.stats.drop(DropTooBig, 1)
			r.answerTooBig(pkt, now)
			continue
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			r.stats.drop(DropNoSession, 1)
			continue
		}
		wasEmpty := s.down.Len() == 0
		if !s.down.Push(append(r.bufs.get(), pkt...), now) { // refused: the queue released the copy
			r.stats.drop(DropQueueFull, 1)
		} else if wasEmpty && s.stream != nil {
			wake = append(wake, s.stream)
		}
		s.mu.Unlock()
	}
	// A stream sleeps once Pull found the queue empty: an empty queue
	// that fills is the only thing that needs to wake it.
	for _, st := range wake {
		st.Wake()
	}
}

// answerTooBig writes to the TUN the ICMP error that tells pkt's sender the
// largest packet a bundle carries, when the RFCs and the rate limit allow
// one. The error goes back out to the internet through the exit's NAT,
// which maps it to the flow it quotes.
func (r *Router) answerTooBig(pkt []byte, now time.Time) {
	msg, err := r.tooBig.TooBig(pkt, r.bundleCap-ipr.LengthPrefixSize, now)
	if err != nil {
		return // not allowed, or rate limited: the drop is counted
	}
	if err := r.cfg.TUN.Write([][]byte{msg}); err != nil {
		// DropTUNWrite counts client packets; the packet this answers
		// is counted as DropTooBig, and ICMPTooBigSent stays behind it.
		return
	}
	r.stats.icmpTooBigSent.Add(1)
}

// Tick gives up upstream gaps that waited too long and, once a second, ends
// idle sessions. Run calls it; tests call it with a fake clock.
func (r *Router) Tick(now time.Time) {
	r.tickMu.Lock()
	defer r.tickMu.Unlock()
	r.expireGaps(now)
	if now.Before(r.nextIdleCheck) {
		return
	}
	r.nextIdleCheck = now.Add(idleCheckInterval)
	r.expireIdle(now)
}

func (r *Router) expireGaps(now time.Time) {
	r.gapMu.Lock()
	sessions := make([]*session, 0, len(r.gapped))
	for s := range r.gapped {
		sessions = append(sessions, s)
	}
	r.gapMu.Unlock()
	for _, s := range sessions {
		var info *ipr.Info // refusals found here go unreported: the client will send again
		s.mu.Lock()
		if !s.closed && s.up != nil {
			out := s.batch[:0]
			before := s.up.Stats()
			s.up.Expire(now, func(bundle []byte) { out = r.filterUp(s, bundle, out, &info) })
			r.stats.addReorder(s.up.Stats().Sub(before))
			r.writeTUN(s, out)
		}
		r.markGapped(s)
		s.mu.Unlock()
	}
}

func (r *Router) expireIdle(now time.Time) {
	var gone []SessionKey
	var streams []Stream
	r.mu.Lock()
	for key, s := range r.sessions {
		s.mu.Lock()
		idle := now.Sub(s.lastSeen) >= r.cfg.IdleTimeout
		s.mu.Unlock()
		if idle {
			streams = append(streams, r.endLocked(s))
			r.stats.sessionsExpired.Add(1)
			gone = append(gone, key)
		}
	}
	r.mu.Unlock()
	closeStreams(streams)
	for _, key := range gone {
		// Sent in case the client still listens and holds SURBs with us;
		// failure is likely and harmless.
		r.reply(key, &ipr.UnrequestedDisconnect{Reason: ipr.ReasonIdle})
	}
}

// Close ends every session, telling each client. Requests Submit queued
// are handled first; later ones are refused. Closing again does nothing. It
// returns nil.
func (r *Router) Close() error {
	r.stopDispatch()
	var gone []SessionKey
	var streams []Stream
	r.mu.Lock()
	for key, s := range r.sessions {
		streams = append(streams, r.endLocked(s))
		r.stats.sessionsClosed.Add(1)
		gone = append(gone, key)
	}
	r.mu.Unlock()
	closeStreams(streams)
	for _, key := range gone {
		r.reply(key, &ipr.UnrequestedDisconnect{Reason: ipr.ReasonShutdown})
	}
	return nil
}

// endLocked removes a session and returns its addresses to the pool. It
// returns the session's stream, for the caller to close once r.mu is
// released. r.mu is held.
func (r *Router) endLocked(s *session) Stream {
	delete(r.sessions, s.key)
	delete(r.byNonce, s.nonce)
	delete(r.byAddr, s.addrs.V4)
	delete(r.byAddr, s.addrs.V6)
	s.mu.Lock()
	s.closed = true
	r.stats.drop(DropSessionClosed, s.down.Reset())
	r.markGapped(s)
	owner := Owner{Nonce: s.nonce, Sender: s.key}
	st := s.takeStream()
	s.mu.Unlock()
	r.cfg.Pool.Release(s.addrs, owner, r.cfg.Now())
	if r.cfg.Released != nil {
		r.cfg.Released(s.addrs)
	}
	return st
}

func (r *Router) lookup(key SessionKey) *session {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.sessions[key]
}

// maxStarved bounds the starved senders remembered; starveFor is how long
// one is remembered without a new failed reply. Past the bound a sender's
// replies may wait again, on its own worker only.
const (
	maxStarved = 1 << 16
	starveFor  = time.Minute
)

// canReply reports whether a reply to key may be tried: the sender has
// SURBs, or it is not starved.
func (r *Router) canReply(key SessionKey, now time.Time) bool {
	if r.cfg.CanReply == nil || r.cfg.CanReply(key) {
		r.setStarved(key, false, now)
		return true
	}
	r.starvedMu.Lock()
	defer r.starvedMu.Unlock()
	since, starved := r.starved[key]
	return !starved || now.Sub(since) >= starveFor
}

// setStarved records whether key's last reply failed for want of SURBs.
func (r *Router) setStarved(key SessionKey, starved bool, now time.Time) {
	r.starvedMu.Lock()
	defer r.starvedMu.Unlock()
	if !starved {
		delete(r.starved, key)
		return
	}
	if len(r.starved) >= maxStarved {
		for k, since := range r.starved {
			if now.Sub(since) >= starveFor {
				delete(r.starved, k)
			}
		}
		if len(r.starved) >= maxStarved {
			return
		}
	}
	r.starved[key] = now
}

// reply marshals and sends a response, counting the outcome. A starved
// sender is not waited for.
func (r *Router) reply(key SessionKey, resp ipr.Response) {
	now := r.cfg.Now()
	if !r.canReply(key, now) {
		r.stats.repliesFailed.Add(1)
		return
	}
	b, err := ipr.MarshalResponse(resp)
	if err != nil { // only our own values are marshalled: a bug, not input
		r.stats.repliesFailed.Add(1)
		return
	}
	hadSURBs := r.cfg.CanReply == nil || r.cfg.CanReply(key)
	if err := r.cfg.Reply(key, b); err != nil {
		r.stats.repliesFailed.Add(1)
		if !hadSURBs {
			r.setStarved(key, true, r.cfg.Now())
		}
		return
	}
	r.setStarved(key, false, now)
	r.stats.repliesSent.Add(1)
}

func (s *session) touch(now time.Time) {
	s.mu.Lock()
	s.lastSeen = now
	s.mu.Unlock()
}
