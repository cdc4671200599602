package node

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

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

// apiHandler serves the node's public HTTP API: health for the directory's
// probes and what the node does. Metrics are on their own listener
// (metricsHandler), if any.
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
	return mux
}

// metricsHandler serves GET /metrics on Config.MetricsListen.
func (n *Node) metricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(n.registry, promhttp.HandlerOpts{}))
	return mux
}

// httpServer is an http.Server for h with the node's HTTP limits, so that
// neither slow clients nor idle keep-alive connections hold file
// descriptors for ever.
func (n *Node) httpServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: n.cfg.HTTPReadTimeout.Duration,
		ReadTimeout:       n.cfg.HTTPReadTimeout.Duration,
		WriteTimeout:      n.cfg.HTTPWriteTimeout.Duration,
		IdleTimeout:       n.cfg.HTTPIdleTimeout.Duration,
		ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelDebug),
	}
}

// capListener closes at once every connection accepted while max others
// are open, and counts it: unlike waiting in Accept, refusing keeps the
// kernel's backlog from filling with connections nobody will serve soon.
type capListener struct {
	net.Listener
	slots   chan struct{}
	refused prometheus.Counter
}

func newCapListener(ln net.Listener, max int, refused prometheus.Counter) *capListener {
	return &capListener{Listener: ln, slots: make(chan struct{}, max), refused: refused}
}

// Accept returns the next connection for which there is room.
func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.slots <- struct{}{}:
			return &cappedConn{Conn: c, release: sync.OnceFunc(func() { <-l.slots })}, nil
		default:
			l.refused.Inc()
			c.Close()
		}
	}
}

// cappedConn gives its slot back when closed: first, so that by the time
// the peer sees the connection end, its slot is free.
type cappedConn struct {
	net.Conn
	release func()
}

func (c *cappedConn) Close() error {
	c.release()
	return c.Conn.Close()
}

// serveHTTP serves h on ln with the node's limits until ctx ends.
func (n *Node) serveHTTP(ctx context.Context, ln net.Listener, h http.Handler) error {
	max := n.cfg.HTTPMaxConns
	srv := n.httpServer(h)
	// shutdown ends the server's connections: gracefully, then by force
	// for what Shutdown leaves after its grace (a connection that has not
	// sent its first request for 5 s, a handler that outlives the grace).
	// It runs once, when ctx ends or when Serve returns, whichever is
	// first: Run closes the listener as ctx ends, so Serve can return
	// before the context's callback has started.
	var once sync.Once
	shutdown := func() {
		once.Do(func() {
			grace, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if srv.Shutdown(grace) != nil {
				srv.Close()
			}
		})
	}
	stop := context.AfterFunc(ctx, shutdown)
	err := srv.Serve(newCapListener(ln, max, n.metrics.httpRefused))
	stop()
	shutdown() // or wait for the callback's: requests in progress finish before Run returns
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
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
