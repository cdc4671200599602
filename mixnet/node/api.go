package node

import (
	"encoding/json"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/link"
)

// RolesResponse is the body of GET /api/v1/roles.
type RolesResponse struct {
	Mode     Mode           `json:"mode"`
	Epoch    uint64         `json:"epoch"`
	Rotation uint64         `json:"rotation"`
	Role     directory.Role `json:"role"`
	Layer    int            `json:"layer,omitempty"`
}

// apiHandler serves the node's HTTP API: health for the directory's probes,
// what the node does, and Prometheus metrics.
func (n *Node) apiHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/health", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /api/v1/roles", func(w http.ResponseWriter, r *http.Request) {
		s := n.state.Load()
		writeJSON(w, RolesResponse{Mode: n.cfg.Mode, Epoch: s.Epoch, Rotation: s.Rotation, Role: s.Role, Layer: s.Layer})
	})
	mux.HandleFunc("GET /api/v1/description", func(w http.ResponseWriter, r *http.Request) {
		n.mu.Lock()
		d := n.descriptor
		n.mu.Unlock()
		writeJSON(w, d)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(n.registry, promhttp.HandlerOpts{}))
	return mux
}

// Registerer is the registry behind GET /metrics, for what runs beside the
// node (the exit's IP packet router) to add its own metrics to.
func (n *Node) Registerer() prometheus.Registerer { return n.registry }

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// linkCollector exports link counters, which the link package keeps as
// plain atomics so that it need not depend on Prometheus.
type linkCollector struct {
	stats *link.Stats
	desc  *prometheus.Desc
}

func newLinkCollector(s *link.Stats) *linkCollector {
	return &linkCollector{stats: s, desc: prometheus.NewDesc("nym_link_events_total",
		"Link events: frames and messages sent and received, drops and refusals by reason.", []string{"event"}, nil)}
}

func (c *linkCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *linkCollector) Collect(ch chan<- prometheus.Metric) {
	c.stats.Each(func(name string, v uint64) {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(v), name)
	})
}
