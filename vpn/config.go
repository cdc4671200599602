package vpn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/nym-go/nym/codel"
	"github.com/nym-go/nym/mixnet/client"
)

// Mixnet is what a Tunnel needs of a connected mixnet client; *client.Client
// has it. The tunnel's data goes up a stream the client pulls from
// (OpenStream): every packet carries the sender tag, by which the exit knows
// the session, but most carry no reply SURBs: those go where room is spare,
// or alone when the exit runs low. Connect, Ping and Disconnect are pushed
// with SendRepliablePacket.
type Mixnet interface {
	OpenStream(to client.Address, src client.Source) (*client.Stream, error)
	SendRepliablePacket(ctx context.Context, to client.Address, data []byte, nSURBs int) error
	RepliablePacketCapacity(nSURBs int) int
	ReplyCapacity() int
	Receive() <-chan client.Message
	// Offline is how long the client has been cut off from its gateway.
	Offline() time.Duration
	Close() error
}

var _ Mixnet = (*client.Client)(nil)

// DefaultMinSURBs is the SURB stock the exit keeps for an idle tunnel with
// a Poisson stream: about a web page's worth of replies (256 × 2 KB). Why so
// many: every reply needs a SURB, and we can send at most three per Poisson
// slot (150/s at Nym's 50 packets/s), so a burst larger than the stock waits
// on our upstream. Measured in the local network, the page of
// localnet/bench.sh (about 380 replies) took 2.9–3.6 s from a stock of
// 60–95 and 1.8–2.1 s from one of 250–300. SURBs cost nothing on the wire
// while the tunnel is idle (they ride slots that would carry cover), a
// Sphinx header each to make, and 413 bytes each at the exit.
//
// Without a Poisson stream SURBs go out as fast as we make them, in packets
// of their own, so the supply follows the exit's backlog within a round
// trip and a small stock (DefaultMinSURBsDirect) does: a large one would
// only cost Sphinx headers, which then hold up the upstream data.
const (
	DefaultMinSURBs       = 256
	DefaultMinSURBsDirect = 20
)

// minSURBs is MinSURBs' default for profile p.
func minSURBs(p Profile) int {
	if p.Loopix.SendInterval > 0 {
		return DefaultMinSURBs
	}
	return DefaultMinSURBsDirect
}

// Dialer connects a mixnet client and names the exit router to use through
// it. The tunnel calls it once to start and again after losing its path; a
// dialer for a real network should then pick another entry gateway. The
// router must stay the same: the session lives there.
type Dialer func(ctx context.Context, attempt int) (Mixnet, client.Address, error)

// Config configures a Tunnel. Zero fields take the documented defaults.
type Config struct {
	// Dial connects the mixnet. Required.
	Dial Dialer
	// Profile is the mixing profile the dialer used; it sets the
	// resequencing timeout. Zero means DefaultProfile.
	Profile Profile

	// MinSURBs is the reply SURBs the exit should hold when it has nothing
	// to send: what the first round trip of a burst (a web page, the start
	// of a download) spends before our SURBs sent in answer to its backlog
	// arrive; MaxSURBs caps the supply (the exit keeps at most 500 per
	// sender). Defaults: DefaultMinSURBs with a Poisson stream,
	// DefaultMinSURBsDirect without; 400.
	MinSURBs, MaxSURBs int
	// ConnectSURBs go with each Connect and Ping. Default 10.
	ConnectSURBs int

	// QueueTarget and QueueInterval are CoDel's parameters for the
	// upstream queue (see upstreamCoDel for the choice). Defaults: two
	// Poisson slots but at least 40 ms, and ten times that; with no
	// Poisson stream, RFC 8289's 5 ms and 100 ms. MaxQueuePackets and
	// MaxQueueBytes are memory guards, far above what CoDel lets stand:
	// each queued packet holds a TUN read buffer of tun.MaxPacketSize.
	// Defaults 128 packets and 1 MiB.
	QueueTarget, QueueInterval     time.Duration
	MaxQueuePackets, MaxQueueBytes int
	// ConnectRetry is the wait for a ConnectOK before the Connect is sent
	// again; ConnectTimeout bounds one whole handshake. Defaults 5 s, 60 s.
	ConnectRetry, ConnectTimeout time.Duration
	// PingInterval: a ping is sent when nothing came back, or nothing was
	// sent, for this long; it keeps the session from expiring at the exit
	// (60 s) and tests the path. Default 10 s.
	PingInterval time.Duration
	// DeadAfter: with no reply for this long the path is declared dead and
	// the tunnel redials. Default 30 s.
	DeadAfter time.Duration
	// GatewayTimeout: with the mixnet client cut off from its gateway for
	// this long (the gateway is down or unreachable), the path is declared
	// dead at once rather than after DeadAfter, and the tunnel redials,
	// through another gateway if the dialer picks one. Long enough to ride
	// out a gateway restart; default 5 s.
	GatewayTimeout time.Duration
	// RedialMin and RedialMax bound the wait between failed redials; it
	// doubles. Defaults 500 ms and 15 s.
	RedialMin, RedialMax time.Duration

	// OnState, when set, is called on every state change, from the
	// tunnel's goroutines; it must not block.
	OnState func(State)
	// OnRefused, when set, is called when the exit reports that its policy
	// refused traffic to dst, so that a proxy can fail the connection at
	// once with a clear reason. From the tunnel's goroutines; must not block.
	OnRefused func(dst netip.AddrPort, proto uint8, reason string)
	// Logger; nil uses slog.Default().
	Logger *slog.Logger
}

// withDefaults returns c with its zero fields set to the defaults, or an
// error for an invalid value.
func (c Config) withDefaults() (Config, error) {
	if c.Dial == nil {
		return c, errors.New("vpn: Config.Dial is required")
	}
	for _, v := range []int{c.MinSURBs, c.MaxSURBs, c.ConnectSURBs, c.MaxQueuePackets, c.MaxQueueBytes} {
		if v < 0 {
			return c, fmt.Errorf("vpn: negative Config value %d", v)
		}
	}
	for _, v := range []time.Duration{c.QueueTarget, c.QueueInterval, c.ConnectRetry, c.ConnectTimeout, c.PingInterval,
		c.DeadAfter, c.GatewayTimeout, c.RedialMin, c.RedialMax} {
		if v < 0 {
			return c, fmt.Errorf("vpn: negative Config duration %v", v)
		}
	}
	if c.Profile.Name == "" {
		c.Profile = DefaultProfile()
	}
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	defInt := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defInt(&c.MinSURBs, minSURBs(c.Profile))
	defInt(&c.MaxSURBs, 400)
	defInt(&c.ConnectSURBs, 10)
	target, interval := upstreamCoDel(c.Profile)
	def(&c.QueueTarget, target)
	def(&c.QueueInterval, max(interval, 2*c.QueueTarget))
	defInt(&c.MaxQueuePackets, 128)
	defInt(&c.MaxQueueBytes, 1<<20)
	def(&c.ConnectRetry, 5*time.Second)
	def(&c.ConnectTimeout, 60*time.Second)
	def(&c.PingInterval, 10*time.Second)
	def(&c.DeadAfter, 30*time.Second)
	def(&c.GatewayTimeout, 5*time.Second)
	def(&c.RedialMin, 500*time.Millisecond)
	def(&c.RedialMax, 15*time.Second)
	if c.QueueTarget >= c.QueueInterval {
		return c, fmt.Errorf("vpn: QueueTarget %v not below QueueInterval %v", c.QueueTarget, c.QueueInterval)
	}
	if c.MinSURBs > c.MaxSURBs {
		return c, fmt.Errorf("vpn: MinSURBs %d above MaxSURBs %d", c.MinSURBs, c.MaxSURBs)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// upstreamCoDel chooses CoDel's target and interval for the upstream queue
// from what a slot costs. The queue drains one DataUp per slot of the
// mixnet client's Poisson stream, at most one full-MTU packet each, and a
// slot comes every SendInterval on average (20 ms at Nym's defaults); the
// client shares the slots round robin with its own messages, so under load
// the tunnel's turn can come every other slot.
//
// Target is two slots (40 ms). A packet that finds no queue still waits for
// the next slot, an exponential wait of mean SendInterval, so a target of
// one slot would see a "standing" queue in the clock's own noise, and drop
// packets that only met a late slot; and with less than a slot or two's
// worth ready, a burst that arrives just after a slot leaves the following
// slots to cover traffic. Two slots keep the standing queue at about two
// packets, so the upstream adds about two slots to the RTT under load.
//
// Interval is ten targets (400 ms), about twice the idle RTT through the
// tunnel at Nym's defaults (150–180 ms: three mix hops each way and a slot
// at both ends). RFC 8289's interval is a round trip of the flows through
// the queue: TCP needs one to answer a drop, and CoDel must not drop again
// before the answer could be seen. Ten targets is also the RFC's
// target-to-interval ratio (5–10 %). Without a Poisson stream packets leave
// as fast as the link takes them, and RFC 8289's defaults (5 ms, 100 ms)
// apply as floors.
//
// With a Poisson stream the target is at least minSlotTarget, however fast
// the stream. The slots are a server with exponential gaps: the queue a
// busy upload keeps before it waits, on average, ρ/(1−ρ) slots at a share
// ρ of the slots used, so a target of two slots holds an upload to about
// two thirds of them (ρ/(1−ρ) = 2). At anonymous-plus's 200 slots/s two
// slots are 10 ms: its upload used 124–152 of the 200 DataUps/s, CoDel
// dropping 11–19 packets/s. Nym's defaults keep their 40 ms.
func upstreamCoDel(p Profile) (target, interval time.Duration) {
	target = codel.DefaultTarget
	if p.Loopix.SendInterval > 0 {
		target = max(2*p.Loopix.SendInterval, minSlotTarget, target)
	}
	return target, max(10*target, codel.DefaultInterval)
}

// minSlotTarget is the least CoDel target of an upstream queue served by a
// Poisson stream: eight slots at anonymous-plus's 200/s, where an upload
// may then use ~90% of them (see upstreamCoDel).
const minSlotTarget = 40 * time.Millisecond
