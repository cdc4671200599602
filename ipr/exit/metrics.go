package exit

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/nym-go/nym/ipr/router"
)

// collector exports a Service's counters to Prometheus. The router and the
// client keep plain atomics, so that neither depends on Prometheus; this
// reads them at scrape time.
type collector struct {
	stats func() (Stats, bool)

	sessions, queued, surbsHeld     *prometheus.Desc
	awaiting                        *prometheus.Desc
	sessionEvents, requests, drops  *prometheus.Desc
	packets, bytes, bundles, events *prometheus.Desc
}

// NewCollector returns a Prometheus collector of the IP packet router's
// counters. stats returns the running service's Stats, or false while no
// router runs (the node is not an exit this epoch, or it is restarting):
// the collector then reports nothing rather than zeros that would look like
// counter resets.
func NewCollector(stats func() (Stats, bool)) prometheus.Collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("nym_ipr_"+name, help, labels, nil)
	}
	return &collector{
		stats:         stats,
		sessions:      d("sessions", "VPN sessions open at the IP packet router."),
		queued:        d("queued_packets", "IP packets waiting in the sessions' downstream queues for a reply SURB to carry them."),
		surbsHeld:     d("reply_surbs_held", "Reply SURBs the router holds for all its sessions."),
		awaiting:      d("replies_queued", "Replies handed to the router's mixnet client and not yet sent."),
		sessionEvents: d("session_events_total", "Sessions opened, moved to a new sender tag, expired or closed.", "event"),
		requests:      d("requests_total", "Requests from clients, by outcome.", "outcome"),
		drops:         d("dropped_packets_total", "IP packets the router dropped, by reason.", "reason"),
		packets:       d("packets_total", "IP packets routed, by direction (up: client to internet).", "direction"),
		bytes:         d("bytes_total", "IP bytes routed, by direction.", "direction"),
		bundles:       d("bundles_total", "Mixnet messages of IP packets, by direction.", "direction"),
		events:        d("reply_events_total", "Reply events: sessions' downstream found without SURBs, low-SURB notices sent, control replies that waited for SURBs in vain, ICMP too-big errors sent.", "event"),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.sessions, c.queued, c.surbsHeld, c.awaiting, c.sessionEvents,
		c.requests, c.drops, c.packets, c.bytes, c.bundles, c.events} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s, ok := c.stats()
	if !ok {
		return
	}
	r := s.Router
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(c.sessions, float64(r.Sessions))
	gauge(c.queued, float64(r.Queued))
	gauge(c.surbsHeld, float64(s.Client.SURBsHeld))
	gauge(c.awaiting, float64(s.Client.Queued))
	counter(c.sessionEvents, r.SessionsOpened, "opened")
	counter(c.sessionEvents, r.SessionsMoved, "moved")
	counter(c.sessionEvents, r.SessionsExpired, "expired")
	counter(c.sessionEvents, r.SessionsClosed, "closed")
	refused := r.BadRequests + r.DataNoSession + r.RequestsNoSURB
	counter(c.requests, r.RequestsIn-min(refused, r.RequestsIn), "accepted")
	counter(c.requests, r.BadRequests, "malformed")
	counter(c.requests, r.DataNoSession, "no_session")
	counter(c.requests, r.RequestsNoSURB, "no_surb")
	counter(c.requests, r.RequestsDropped, "queue_full")
	counter(c.requests, r.ConnectsRefused, "connect_refused")
	counter(c.requests, r.ConnectsOverCap, "connect_over_cap") // also in connect_refused
	counter(c.requests, r.WantRefused, "want_refused")         // granted other addresses
	for reason := range router.NumDropReasons {
		counter(c.drops, r.Drops[reason], reason.String())
	}
	counter(c.packets, r.PacketsUp, "up")
	counter(c.packets, r.PacketsDown, "down")
	counter(c.bytes, r.BytesUp, "up")
	counter(c.bytes, r.BytesDown, "down")
	counter(c.bundles, r.BundlesUp, "up")
	counter(c.bundles, r.BundlesDown, "down")
	counter(c.events, r.Starved, "starved")
	counter(c.events, r.LowSURBInfos, "low_surb_info")
	counter(c.events, s.ControlTimeouts, "control_timeout")
	counter(c.events, r.ICMPTooBigSent, "icmp_too_big")
}
