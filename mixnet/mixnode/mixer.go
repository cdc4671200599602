package mixnode

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nym-go/nym/mixnet/replay"
	"github.com/nym-go/nym/mixnet/sphinx"
)

// A Mixer unwraps, checks, holds and forwards Sphinx packets. Create it with
// New, install keys with SetKeys, feed it with Submit, and run it with Run.
type Mixer struct {
	cfg     Config
	epoch   time.Time // zero point of now; carries a monotonic reading
	keys    keyRing
	metrics *metrics

	in    chan inbound // Submit → workers
	delay delayStage

	running atomic.Bool
	stopped atomic.Bool // Run has returned: Submit refuses
}

// inbound is a submitted packet waiting for a worker.
type inbound struct {
	pkt     []byte
	odd     bool          // key-rotation parity from the link frame
	arrived time.Duration // Mixer.now at Submit
	packet  uint64        // trace id (SubmitTraced); 0 when not traced
}

// New returns a Mixer configured by cfg. It holds no keys yet: call SetKeys.
func New(cfg Config) (*Mixer, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	m := &Mixer{
		cfg:   cfg,
		epoch: time.Now(),
		in:    make(chan inbound, cfg.QueueLen),
		delay: delayStage{max: cfg.MaxHeld},
	}
	// Refuse a bad filter size here rather than at the first SetKeys.
	if _, err := replay.BytesFor(cfg.ReplayCapacity, cfg.ReplayFPRate); err != nil {
		return nil, fmt.Errorf("mixnode: %w", err)
	}
	if cfg.ReplayDir != "" {
		if err := os.MkdirAll(cfg.ReplayDir, 0o700); err != nil {
			return nil, fmt.Errorf("mixnode: replay directory: %w", err)
		}
	}
	m.metrics = newMetrics(
		func() float64 { return float64(len(m.in)) },
		func() float64 { return float64(m.delay.len()) },
		m.keys.lookup,
	)
	m.keys.store = &replayStore{
		dir:      cfg.ReplayDir,
		capacity: cfg.ReplayCapacity,
		fpRate:   cfg.ReplayFPRate,
		prefault: cfg.ReplayPrefault,
		log:      cfg.Logger,
		failures: m.metrics.replaySaveFailures,
	}
	if cfg.Registerer != nil {
		if err := m.metrics.register(cfg.Registerer); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// SetKeys installs the Sphinx keys the node holds: the current rotation's,
// plus during the overlap the next (or previous) one; at most one key per
// rotation parity. A key already installed for the same rotation keeps its
// replay filter; a new key gets the one saved for it in Config.ReplayDir, or
// an empty one; keys left out are dropped with their filters (and files), and
// packets of their parity are then refused. It is safe to
// call while Run is running. On error the held keys are unchanged.
func (m *Mixer) SetKeys(keys ...RotationKey) error {
	added, removed, err := m.keys.set(keys)
	if err != nil {
		return err
	}
	if len(added) > 0 || len(removed) > 0 {
		m.cfg.Logger.Info("mixnode: Sphinx keys changed", "added", added, "removed", removed)
	}
	return nil
}

// Submit queues pkt for mixing and reports whether it was accepted. It never
// blocks: when the input queue is full, or Run has returned, the packet is
// dropped and counted.
// oddRotation is the key-rotation parity carried by the link frame. The Mixer
// owns pkt from here on (it is unwrapped in place).
func (m *Mixer) Submit(pkt []byte, oddRotation bool) bool {
	return m.SubmitTraced(pkt, oddRotation, 0)
}

// SubmitTraced is Submit for a node that records anonymity traces: packet,
// if not 0, is the id under which the caller recorded the packet's arrival,
// and Config.Traced gets it back when the packet leaves.
func (m *Mixer) SubmitTraced(pkt []byte, oddRotation bool, packet uint64) bool {
	m.metrics.received.Inc()
	if m.stopped.Load() {
		m.metrics.drop(dropShutdown)
		return false
	}
	select {
	case m.in <- inbound{pkt: pkt, odd: oddRotation, arrived: m.now(), packet: packet}:
		return true
	default:
		m.metrics.drop(dropQueueFull)
		return false
	}
}

// Run runs the worker pool and the delay stage until ctx is done, then
// returns nil once all of them have stopped. Packets still queued or held are
// dropped and counted. A Mixer runs once.
func (m *Mixer) Run(ctx context.Context) error {
	if !m.running.CompareAndSwap(false, true) {
		return errors.New("mixnode: Mixer.Run called twice")
	}
	precise := true
	s, err := newPreciseSleeper()
	if err != nil {
		m.cfg.Logger.Warn("mixnode: falling back to runtime timers; delays may run up to 1 ms late", "err", err)
		s, precise = newTimerSleeper(), false
	}
	m.delay.sleeper = s

	var wg sync.WaitGroup
	for range m.cfg.Workers {
		wg.Go(func() { m.runWorker(ctx) })
	}
	wg.Go(func() { m.runDelay(ctx, precise) })
	if m.cfg.ReplayDir != "" {
		wg.Go(func() { m.runReplayFlush(ctx) })
	}
	<-ctx.Done()
	s.wake() // the delay stage may be asleep with no deadline
	wg.Wait()
	if err := s.close(); err != nil {
		m.cfg.Logger.Warn("mixnode: stopping", "err", err)
	}
	// The workers have stopped, so this save holds every tag accepted.
	m.keys.store.saveAll(&m.keys)

	// Everything has stopped: count what is left held or queued. A Submit
	// racing with this may still queue a packet, which then stays until the
	// Mixer is garbage: at most QueueLen of them.
	m.stopped.Store(true)
	for range m.delay.discard() {
		m.metrics.drop(dropShutdown)
	}
	for {
		select {
		case <-m.in:
			m.metrics.drop(dropShutdown)
		default:
			m.cfg.Logger.Debug("mixnode: stopped")
			return nil
		}
	}
}

// runReplayFlush saves the replay filters every ReplayFlushInterval until ctx
// is done, bounding what a crash loses.
func (m *Mixer) runReplayFlush(ctx context.Context) {
	t := time.NewTicker(m.cfg.ReplayFlushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.keys.store.saveAll(&m.keys)
		}
	}
}

// now is the time on the Mixer's monotonic clock. Durations since a fixed
// epoch are cheaper to store and compare than time.Time.
func (m *Mixer) now() time.Duration { return time.Since(m.epoch) }

func (m *Mixer) runWorker(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case in := <-m.in:
			m.process(in)
		}
	}
}

// process takes one packet through unwrap and the replay check, and hands it
// on: to Deliver, straight to Forward when its deadline has already come, or
// to the delay stage.
func (m *Mixer) process(in inbound) {
	key := m.keys.lookup(in.odd)
	if key == nil {
		m.metrics.drop(dropUnknownKey)
		return
	}
	start := m.now()
	// The replay check runs inside the unwrap, right after the header MAC,
	// so a replayed packet is refused before the costly half of the work.
	p, err := key.key.ProcessOnce(in.pkt, key.replay)
	done := m.now()
	m.metrics.unwrap.Observe((done - start).Seconds())
	if errors.Is(err, sphinx.ErrReplay) {
		m.metrics.drop(dropReplay)
		return
	}
	if err != nil {
		// Garbage from the network is expected; the counter is the record.
		m.metrics.drop(dropBadPacket)
		return
	}

	if p.Final {
		if m.cfg.Deliver == nil {
			m.metrics.drop(dropFinalAtMix)
			return
		}
		m.metrics.delivered.Inc()
		m.cfg.Deliver(p)
		return
	}

	delay := min(max(p.Delay, 0), m.cfg.MaxDelay)
	release := in.arrived + delay
	if release <= done {
		m.forward(p.NextHop, p.Packet, in.odd, done-release, in.packet)
		return
	}
	if !m.delay.add(heldPacket{release: release, next: p.NextHop, pkt: p.Packet, odd: in.odd, packet: in.packet}) {
		m.metrics.drop(dropHeldFull)
	}
}

// forward hands a packet to the forwarder and records how late it is: the
// time it was held beyond the delay its sender asked for. A traced packet
// (packet not 0) is shown to Config.Traced first.
func (m *Mixer) forward(next [sphinx.AddressSize]byte, pkt []byte, odd bool, late time.Duration, packet uint64) {
	m.metrics.forwarded.Inc()
	m.metrics.addedLatency.Observe(late.Seconds())
	if packet != 0 && m.cfg.Traced != nil {
		m.cfg.Traced(packet, next, len(pkt))
	}
	m.cfg.Forward(next, pkt, odd)
}
