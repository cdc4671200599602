package mixnode

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nym-go/nym/internal/promreg"
)

// dropReason says why a packet was not forwarded or delivered.
type dropReason int

const (
	dropQueueFull  dropReason = iota // input queue full at Submit
	dropUnknownKey                   // no key held for the packet's rotation parity
	dropBadPacket                    // Sphinx refused it: bad MAC, size, point, routing block
	dropReplay                       // replay tag already seen under this key
	dropHeldFull                     // delay stage already holds MaxHeld packets
	dropFinalAtMix                   // last hop here, but this node delivers nothing
	dropShutdown                     // still queued or held when Run returned
	numDropReasons
)

var dropReasonNames = [numDropReasons]string{
	dropQueueFull:  "queue_full",
	dropUnknownKey: "unknown_key",
	dropBadPacket:  "bad_packet",
	dropReplay:     "replay",
	dropHeldFull:   "held_full",
	dropFinalAtMix: "final_at_mix",
	dropShutdown:   "shutdown",
}

// metrics are the Mixer's Prometheus metrics. Counters are resolved once, so
// the packet path never looks up a label.
type metrics struct {
	received  prometheus.Counter
	forwarded prometheus.Counter
	delivered prometheus.Counter
	dropped   [numDropReasons]prometheus.Counter

	unwrap       prometheus.Histogram // seconds per Sphinx unwrap
	addedLatency prometheus.Histogram // seconds held beyond the requested delay

	replaySaveFailures prometheus.Counter

	collectors []prometheus.Collector
}

func newMetrics(inputDepth, heldDepth func() float64, key func(odd bool) *heldKey) *metrics {
	const ns, sub = "nym", "mixnode"
	m := &metrics{
		received: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "packets_received_total",
			Help: "Packets submitted to the mixer.",
		}),
		forwarded: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "packets_forwarded_total",
			Help: "Packets handed to the forwarder for their next hop.",
		}),
		delivered: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "packets_delivered_total",
			Help: "Packets for which this node was the last hop, handed to Deliver.",
		}),
		unwrap: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "unwrap_seconds",
			Help:    "Time to remove one Sphinx layer.",
			Buckets: prometheus.ExponentialBuckets(25e-6, 1.5, 12), // 25 µs … 2.2 ms
		}),
		addedLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "added_latency_seconds",
			Help:    "Time from arrival to forwarding, minus the delay the sender asked for.",
			Buckets: prometheus.ExponentialBuckets(10e-6, 2, 15), // 10 µs … 164 ms
		}),
	}
	m.replaySaveFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: ns, Subsystem: sub, Name: "replay_file_failures_total",
		Help: "Replay filter saves or deletions that failed (see the log).",
	})
	dropped := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Subsystem: sub, Name: "packets_dropped_total",
		Help: "Packets dropped, by reason.",
	}, []string{"reason"})
	for r, name := range dropReasonNames {
		m.dropped[r] = dropped.WithLabelValues(name)
	}
	m.collectors = []prometheus.Collector{
		m.received, m.forwarded, m.delivered, dropped, m.unwrap, m.addedLatency,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "input_queue_packets",
			Help: "Packets waiting to be unwrapped.",
		}, inputDepth),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "held_packets",
			Help: "Packets held in the delay stage.",
		}, heldDepth),
		m.replaySaveFailures,
	}
	m.collectors = append(m.collectors, replayGauges(key)...)
	return m
}

// replayGauges report how full each held key's replay filter is, one series
// per rotation parity (the key slot: stable across rotations, unlike the
// rotation number). An empty slot reads 0. Past capacity the false-positive
// rate climbs, and those are honest packets dropped as replays: the operator
// raises the capacity when the fill nears 1.
func replayGauges(key func(odd bool) *heldKey) []prometheus.Collector {
	const ns, sub = "nym", "mixnode"
	var cs []prometheus.Collector
	for _, odd := range []bool{false, true} {
		labels := prometheus.Labels{"parity": "even"}
		if odd {
			labels["parity"] = "odd"
		}
		stat := func(v func(k *heldKey) float64) func() float64 {
			return func() float64 {
				if k := key(odd); k != nil {
					return v(k)
				}
				return 0
			}
		}
		cs = append(cs,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Namespace: ns, Subsystem: sub, Name: "replay_tags", ConstLabels: labels,
				Help: "Replay tags recorded in the filter of the key of this rotation parity.",
			}, stat(func(k *heldKey) float64 { return float64(k.replay.Inserted()) })),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Namespace: ns, Subsystem: sub, Name: "replay_fill_ratio", ConstLabels: labels,
				Help: "Replay tags recorded over the filter's capacity; past 1 the false-positive rate climbs fast.",
			}, stat(func(k *heldKey) float64 { return float64(k.replay.Inserted()) / float64(k.replay.Capacity()) })),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Namespace: ns, Subsystem: sub, Name: "replay_expected_fp_rate", ConstLabels: labels,
				Help: "Expected share of new packets the replay filter wrongly drops as replays, at its current fill.",
			}, stat(func(k *heldKey) float64 { return k.replay.ExpectedFPRate(k.replay.Inserted()) })),
		)
	}
	return cs
}

// register registers every collector with r, all or none. The Mixer lives
// as long as its node and never unregisters them.
func (m *metrics) register(r prometheus.Registerer) error {
	if _, err := promreg.Register(r, m.collectors...); err != nil {
		return fmt.Errorf("mixnode: register metrics: %w", err)
	}
	return nil
}

func (m *metrics) drop(r dropReason) { m.dropped[r].Inc() }
