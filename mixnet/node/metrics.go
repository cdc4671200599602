package node

import "github.com/prometheus/client_golang/prometheus"

// metrics are the node's own counters; the mixer and links register theirs
// on the same registry.
type metrics struct {
	dropped *prometheus.CounterVec
	epoch   prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "nym", Subsystem: "node", Name: "dropped_total",
			Help: "Packets the node dropped outside the mixer, by reason.",
		}, []string{"reason"}),
		epoch: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "nym", Subsystem: "node", Name: "epoch",
			Help: "The epoch of the topology the node follows.",
		}),
	}
	reg.MustRegister(m.dropped, m.epoch)
	return m
}
