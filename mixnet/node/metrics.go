package node

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nym-go/nym/internal/promreg"
	"github.com/nym-go/nym/mixnet/link"
)

// metrics are the node's own counters; newMetrics registers them with the
// links' counters, and the mixer and gateway register theirs on the same
// registry.
type metrics struct {
	dropped     *prometheus.CounterVec
	epoch       prometheus.Gauge
	httpRefused prometheus.Counter // HTTP connections over http_max_conns
}

func newMetrics(reg prometheus.Registerer, links *link.Stats) (*metrics, error) {
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
	if _, err := promreg.Register(reg, m.dropped, m.epoch, m.httpRefused, newLinkCollector(links)); err != nil {
		return nil, fmt.Errorf("node: register metrics: %w", err)
	}
	return m, nil
}
