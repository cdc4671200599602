package client

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/nym-go/nym/anonymity"
	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/gatewire"
	"github.com/nym-go/nym/mixnet/link"
	"github.com/nym-go/nym/mixnet/sphinx"
)

// Loopix holds the traffic-shaping parameters. Every field is used as given:
// zero turns that part off.
type Loopix struct {
	// HopDelay is the mean of the exponential delay each mix holds a packet.
	// Zero: mixes forward at once.
	HopDelay time.Duration
	// SendInterval is the mean interval of the main Poisson stream, which
	// carries real packets and, when none is queued, loop cover. Zero: no
	// stream; real packets are sent as soon as they are ready.
	SendInterval time.Duration
	// CoverInterval is the mean interval of the second Poisson stream, which
	// sends only loop cover. Zero: no such stream.
	CoverInterval time.Duration

	// ExtendedReplies makes the SURBs this client hands out carry their
	// replies in extended packets (sphinx.SizeExtended, 8 KiB of message,
	// Nym's ExtendedPacket8): four times the data per SURB and per Sphinx
	// operation at every hop, so a download needs a quarter of the SURBs,
	// of the upstream they cost and of the mixes' work. The price: at
	// every mix, extended packets are a class of their own, mixed only
	// with each other; ExtendedCoverInterval keeps that class from being
	// only replies. False: regular replies.
	ExtendedReplies bool
	// ExtendedCoverInterval is the mean interval of a third Poisson stream
	// of loop cover in extended packets, built as replies to ourselves so
	// that every mix sees them as it sees replies. Zero: no such stream.
	ExtendedCoverInterval time.Duration

	// DownstreamInterval asks the gateway for a constant-rate downstream:
	// one frame of one length (DownstreamFrameLen()) every interval, whether
	// it carries deliveries or nothing. Without it the gateway pushes each
	// delivery when it arrives, and a watcher of the client's link sees
	// when, and how much, the client downloads. The interval also caps
	// what comes down: DownstreamFrameLen per interval, acks and loop
	// cover included. The gateway may grant a longer interval (its
	// operator's cap). Zero: unshaped.
	DownstreamInterval time.Duration
}

// DownstreamFrameLen is the length of every frame of a shaped downstream:
// one holds the largest delivery that reaches this client, the final-hop
// payload of the largest packet it makes SURBs or loop cover of (a regular
// packet, or an extended one with ExtendedReplies or
// ExtendedCoverInterval), so no delivery needs a longer frame: the gateway
// drops a delivery its slots cannot hold rather than send a longer frame.
func (l Loopix) DownstreamFrameLen() int {
	if l.ExtendedReplies || l.ExtendedCoverInterval > 0 {
		return gatewire.SlotLen(sphinx.ExtendedPacketSize)
	}
	return gatewire.SlotLen(sphinx.RegularPacketSize)
}

// DownstreamBytesPerSecond is what a shaped downstream costs, idle or
// not: DownstreamFrameLen per DownstreamInterval (zero when unshaped).
func (l Loopix) DownstreamBytesPerSecond() float64 {
	if l.DownstreamInterval <= 0 {
		return 0
	}
	return float64(l.DownstreamFrameLen()) * float64(time.Second) / float64(l.DownstreamInterval)
}

// NymDefaults are Nym's client defaults: 15 ms per hop, 50 packets/s,
// one loop cover packet per 200 ms.
func NymDefaults() Loopix {
	return Loopix{HopDelay: 15 * time.Millisecond, SendInterval: 20 * time.Millisecond, CoverInterval: 200 * time.Millisecond}
}

// WirePacketSize is what one packet of a client's costs on its link to the
// gateway, before the link's own framing: every packet, real or cover, has
// this size.
const WirePacketSize = wireLen

// ExtendedWirePacketSize is what one extended packet (Loopix.ExtendedReplies,
// ExtendedCoverInterval) costs on a link, before the link's framing.
const ExtendedWirePacketSize = extWireLen

// PacketsPerSecond is the mean rate of packets the client hands its gateway
// whether or not it has anything to send: the Poisson stream (real packets
// or loop cover in its slots) plus the loop cover stream. Without a Poisson
// stream real packets come on top of it.
func (l Loopix) PacketsPerSecond() float64 {
	var r float64
	for _, d := range []time.Duration{l.SendInterval, l.CoverInterval, l.ExtendedCoverInterval} {
		if d > 0 {
			r += float64(time.Second) / float64(d)
		}
	}
	return r
}

// IdleBytesPerSecond is the bandwidth an idle client spends on cover
// towards its gateway: its packets × WirePacketSize, each extended cover
// packet counted at its own size. Loop cover comes back to the client, so
// about as much again arrives from the gateway, or, with a shaped
// downstream, DownstreamBytesPerSecond.
func (l Loopix) IdleBytesPerSecond() float64 {
	r := l.PacketsPerSecond() * WirePacketSize
	if d := l.ExtendedCoverInterval; d > 0 {
		r += float64(time.Second) / float64(d) * (ExtendedWirePacketSize - WirePacketSize)
	}
	return r
}

// Retransmit controls how unacknowledged fragments are sent again. Fields
// are used as given.
type Retransmit struct {
	// Max is how many times one fragment is sent again; zero never resends.
	Max int
	// Multiplier and Slack set the wait for an ack: (forward delays + ack
	// delays) × Multiplier + Slack.
	Multiplier float64
	Slack      time.Duration
}

// DefaultRetransmit resends up to 10 times after (delays × 1.5 + 1.5 s), as
// Nym does (Nym has no limit by default).
func DefaultRetransmit() Retransmit {
	return Retransmit{Max: 10, Multiplier: 1.5, Slack: 1500 * time.Millisecond}
}

// SURBPolicy controls reply SURBs on the replying side.
type SURBPolicy struct {
	// LowWater: after a reply leaves fewer SURBs than this for a sender,
	// ask that sender for more. Default 10.
	LowWater int
	// Request is how many SURBs one request asks for. Default 20.
	Request int
	// MaxPerSender bounds the SURBs kept for one sender tag; older ones go
	// first. Default 500.
	MaxPerSender int
	// MaxSenders bounds the sender tags remembered; the least recently used
	// goes first. Default 10000.
	MaxSenders int
	// MaxAge drops SURBs that were not used in time: the nodes on their
	// route rotate keys. Default 12 h.
	MaxAge time.Duration
	// RequestRetry is the least time between two requests for one tag.
	// Default 10 s.
	RequestRetry time.Duration
	// Grant bounds how many SURBs we send in answer to one request.
	// Default 100.
	Grant int
}

// Config configures a Client. Zero fields take the documented defaults.
type Config struct {
	// Network is the network file of the directory authorities: the client
	// accepts only a consensus signed by its threshold of them, fetched from
	// any that answers.
	Network *directory.Network
	// DirectoryURL and DirectoryKey name one directory and pin its key:
	// the shorthand for a network of one (directory.SingleAuthority). Set
	// these or Network.
	DirectoryURL string
	DirectoryKey ed25519.PublicKey
	// ConsensusCache, with Network, is a file keeping the last verified
	// consensus, used while fresh when no authority answers. Empty: none.
	ConsensusCache string
	// HTTPClient fetches topologies; nil uses a client of our own with a
	// 15 s timeout, whose idle connections Close closes.
	HTTPClient *http.Client

	// Identity is the client's key pair. When nil, IdentityFile is loaded
	// (or created); when that is empty too, a fresh identity is made.
	Identity     *link.KeyPair
	IdentityFile string

	// Tickets pays gateways that require bandwidth tickets: the client
	// spends one when it connects to such a gateway and whenever the
	// gateway asks for the next. Nil: the client has none, and Connect to
	// such a gateway fails with ErrNoTicket.
	Tickets TicketSource

	// Gateway is the gateway to use, by identity. Zero picks an entry
	// gateway at random, weighted by performance. A client's address
	// includes its gateway, so a client that wants a stable address keeps
	// the gateway it got (see Client.Address).
	Gateway directory.Key

	// Loopix is the traffic shaping; nil means NymDefaults.
	Loopix *Loopix
	// Retransmit is the ack policy; nil means DefaultRetransmit.
	Retransmit *Retransmit
	// SURBs is the reply SURB policy; zero fields take defaults.
	SURBs SURBPolicy

	// MaxInFlight bounds the fragments queued or awaiting an ack; Send
	// blocks when it is reached. Default 4096.
	MaxInFlight int
	// MaxMessageSize bounds messages sent and received. Default 8 MiB.
	MaxMessageSize int
	// ReassemblyTimeout drops a partly received message that has received
	// nothing for this long. Default 2 min.
	ReassemblyTimeout time.Duration
	// ReceiveBuffer is the capacity of the Receive channel. Default 256.
	ReceiveBuffer int

	// TopologyRefresh is the longest time between topology fetches; the
	// client also fetches at every epoch end. Default 5 min.
	TopologyRefresh time.Duration
	// ReconnectMin and ReconnectMax bound the wait between attempts to
	// reach the gateway; it doubles after each failure. Defaults 100 ms, 10 s.
	ReconnectMin, ReconnectMax time.Duration

	// DialContext makes the TCP connection to the gateway; nil uses a
	// net.Dialer.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// Logger receives the client's logs; nil uses slog.Default().
	Logger *slog.Logger

	// Trace, if set, records every frame on the link to the gateway, at
	// the client end, with the ground truth only the client knows: which
	// of its packets are cover (package anonymity). For measurement only.
	Trace *anonymity.Recorder

	hooks   *testHooks
	ownHTTP bool // HTTPClient was made by withDefaults
}

// Defaults for zero Config fields.
const (
	DefaultMaxInFlight       = 4096
	DefaultMaxMessageSize    = 8 << 20
	DefaultReassemblyTimeout = 2 * time.Minute
	DefaultReceiveBuffer     = 256
	DefaultTopologyRefresh   = 5 * time.Minute
	DefaultReconnectMin      = 100 * time.Millisecond
	DefaultReconnectMax      = 10 * time.Second
)

func (c Config) withDefaults() (Config, error) {
	if c.Network != nil {
		if c.DirectoryURL != "" || c.DirectoryKey != nil {
			return c, errors.New("client: Config.Network and Config.DirectoryURL/DirectoryKey both set: give one")
		}
		if err := c.Network.Validate(); err != nil {
			return c, fmt.Errorf("client: Config.Network: %w", err)
		}
	} else {
		if c.DirectoryURL == "" {
			return c, errors.New("client: Config.Network or Config.DirectoryURL is required")
		}
		if len(c.DirectoryKey) != ed25519.PublicKeySize {
			return c, fmt.Errorf("client: Config.DirectoryKey has %d bytes, want %d", len(c.DirectoryKey), ed25519.PublicKeySize)
		}
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 15 * time.Second, Transport: http.DefaultTransport.(*http.Transport).Clone()}
		c.ownHTTP = true
	}
	if c.Loopix == nil {
		d := NymDefaults()
		c.Loopix = &d
	}
	if c.Loopix.HopDelay < 0 || c.Loopix.SendInterval < 0 || c.Loopix.CoverInterval < 0 || c.Loopix.DownstreamInterval < 0 {
		return c, errors.New("client: negative Loopix parameter")
	}
	if c.Retransmit == nil {
		d := DefaultRetransmit()
		c.Retransmit = &d
	}
	if c.Retransmit.Max < 0 || c.Retransmit.Multiplier < 0 || c.Retransmit.Slack < 0 {
		return c, errors.New("client: negative Retransmit parameter")
	}
	s := &c.SURBs
	setDefault(&s.LowWater, 10)
	setDefault(&s.Request, 20)
	setDefault(&s.MaxPerSender, 500)
	setDefault(&s.MaxSenders, 10000)
	setDefault(&s.MaxAge, 12*time.Hour)
	setDefault(&s.RequestRetry, 10*time.Second)
	setDefault(&s.Grant, 100)
	s.Request = min(s.Request, maxSURBsPerMessage)
	s.Grant = min(s.Grant, maxSURBsPerMessage)
	setDefault(&c.MaxInFlight, DefaultMaxInFlight)
	setDefault(&c.MaxMessageSize, DefaultMaxMessageSize)
	setDefault(&c.ReassemblyTimeout, DefaultReassemblyTimeout)
	setDefault(&c.ReceiveBuffer, DefaultReceiveBuffer)
	setDefault(&c.TopologyRefresh, DefaultTopologyRefresh)
	setDefault(&c.ReconnectMin, DefaultReconnectMin)
	setDefault(&c.ReconnectMax, DefaultReconnectMax)
	if c.MaxMessageSize > maxFragments*FragmentCapacity {
		return c, fmt.Errorf("client: MaxMessageSize %d exceeds what %d fragments carry", c.MaxMessageSize, maxFragments)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

func setDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}
