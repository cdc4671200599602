package mixnode

import (
	"fmt"
	"log/slog"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nym-go/nym/mixnet/replay"
	"github.com/nym-go/nym/mixnet/sphinx"
)

// Defaults for zero Config fields.
const (
	// DefaultQueueLen is the input queue: Nym's 2000-packet ingress buffer,
	// about 0.1 s of work for a 2-core node at its Sphinx bound.
	DefaultQueueLen = 2000
	// DefaultMaxDelay caps the delay a sender may ask for (Nym: 10 s), so
	// nobody can park packets in a node's memory for long.
	DefaultMaxDelay = 10 * time.Second
	// DefaultMaxHeld bounds the packets held at once: about 120 MB of regular
	// packets. An honest load holds far fewer (Little's law: 20,000 packets/s
	// at a 15 ms mean delay is 300); only senders asking for long delays
	// reach it.
	DefaultMaxHeld = 50_000
	// DefaultReplayFlushInterval is how often replay filters are saved when
	// ReplayDir is set (Nym's interval). A crash loses the tags of at most
	// this long; a clean stop saves them all.
	DefaultReplayFlushInterval = 10 * time.Minute
)

// Config configures a Mixer. Forward is required; zero values of the other
// fields select the defaults.
type Config struct {
	// Workers is the number of goroutines unwrapping packets. Default
	// runtime.GOMAXPROCS(0): the work is CPU-bound.
	Workers int
	// QueueLen is the capacity of the input queue. Default DefaultQueueLen.
	QueueLen int
	// MaxDelay caps a packet's requested delay. Default DefaultMaxDelay.
	MaxDelay time.Duration
	// MaxHeld is the most packets held in the delay stage at once; beyond it
	// packets are dropped. Default DefaultMaxHeld.
	MaxHeld int

	// ReplayCapacity and ReplayFPRate size each key's replay filter.
	// Defaults replay.DefaultCapacity and replay.DefaultFPRate.
	ReplayCapacity uint64
	ReplayFPRate   float64
	// ReplayDir, if set, is the directory where each key's replay filter is
	// saved, so that a restarted node still refuses replays of packets it
	// saw before (see persist.go). It is created (mode 0700) if missing.
	// Empty keeps filters in memory only.
	ReplayDir string
	// ReplayFlushInterval is how often filters are saved to ReplayDir while
	// Run runs; they are saved again when it returns. Default
	// DefaultReplayFlushInterval.
	ReplayFlushInterval time.Duration
	// ReplayPrefault makes each key's replay filter take all its memory
	// when SetKeys installs the key (replay.Filter.Prefault), instead of page
	// by page as packets' tags land in it, each first touch a page fault on
	// the packet path. A node carrying traffic has its whole filters resident
	// within minutes anyway, and a rotation's key is installed before its
	// traffic arrives; idle nodes and tests are cheaper without it. Default
	// false.
	ReplayPrefault bool

	// Forward sends pkt to the node next, in a frame marked with
	// oddRotation: every hop of a route uses the same rotation's keys, so
	// the parity the packet arrived with is the one it leaves with. It is
	// called from several
	// goroutines at once (workers forward zero-delay packets themselves)
	// and must not block: the delay stage calls it too, and a slow call
	// delays every packet behind it. Queue and return, dropping when full.
	// Forward owns pkt.
	Forward func(next [sphinx.AddressSize]byte, pkt []byte, oddRotation bool)
	// Deliver receives packets for which this node is the last hop
	// (gateways). It is called from the worker goroutines and owns p's
	// buffers. Nil drops them: a mix node is never a last hop, so such a
	// packet is counted as "final_at_mix".
	Deliver func(p sphinx.Processed)
	// Traced, if set, is called for each packet submitted with
	// SubmitTraced and a non-zero id, just before Forward, with that id,
	// the next hop and the packet's size: the node records the packet's
	// departure in its anonymity trace there. Like Forward it runs on
	// several goroutines and must not block. Nil, or packets submitted
	// with Submit, cost nothing.
	Traced func(packet uint64, next [sphinx.AddressSize]byte, size int)

	// Logger receives rare events (keys installed, shutdown). Default
	// slog.Default(). Per-packet events are metrics, not logs.
	Logger *slog.Logger
	// Registerer receives the Mixer's metrics. Nil leaves them unregistered.
	Registerer prometheus.Registerer
}

func (c Config) withDefaults() (Config, error) {
	if c.Forward == nil {
		return c, fmt.Errorf("mixnode: Config.Forward is required")
	}
	if c.Workers < 0 || c.QueueLen < 0 || c.MaxDelay < 0 || c.MaxHeld < 0 || c.ReplayFlushInterval < 0 {
		return c, fmt.Errorf("mixnode: negative Config value")
	}
	if c.Workers == 0 {
		c.Workers = runtime.GOMAXPROCS(0)
	}
	if c.QueueLen == 0 {
		c.QueueLen = DefaultQueueLen
	}
	if c.MaxDelay == 0 {
		c.MaxDelay = DefaultMaxDelay
	}
	if c.MaxHeld == 0 {
		c.MaxHeld = DefaultMaxHeld
	}
	if c.ReplayCapacity == 0 {
		c.ReplayCapacity = replay.DefaultCapacity
	}
	if c.ReplayFPRate == 0 {
		c.ReplayFPRate = replay.DefaultFPRate
	}
	if c.ReplayFlushInterval == 0 {
		c.ReplayFlushInterval = DefaultReplayFlushInterval
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}
