package node

import "github.com/prometheus/client_golang/prometheus"

// metrics are the node's own counters; the mixer and links register theirs
// on the same registry.
type metrics struct {
	dropped     *prometheus.CounterVec
	epoch       prometheus.Gauge
	httpRefused prometheus.Counter // HTTP connections over http_max_conns
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
		httpRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "nym", Subsystem: "node", Name: "http_conns_refused_total",
			Help: "HTTP connections (API and metrics) closed at once because http_max_conns were open.",
		}),
	}
	reg.MustRegister(m.dropped, m.epoch, m.httpRefused)
	return m
}
