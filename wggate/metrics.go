package wggate

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/nym-go/nym/internal/promreg"
)

// Reasons the entry drops a packet a client's peer sent inside the outer
// tunnel (nym_wg_relay_dropped_total{reason}).
const (
	dropMalformed = "malformed"
	dropNotUDP    = "not_udp"
	dropFragment  = "fragment"
	dropNotExit   = "not_exit" // UDP, but not to a current exit's WireGuard endpoint
	dropNoPeer    = "no_peer"
	dropFlowLimit = "flow_limit"
	dropSendError = "send_error"
	dropQueueFull = "queue_full" // replies: the device's inbound queue was full
	dropTooBig    = "too_big"    // replies: a datagram longer than relayReadSize
)

// Outcomes of registrations (nym_wg_registrations_total{role, outcome}).
const (
	regOK        = "ok"
	regMalformed = "malformed"
	regReplay    = "replay"
	regStale     = "stale"
	regTicket    = "ticket"
	regFull      = "full"
	regRefused   = "refused" // not this gateway's role or not a relaying gateway
	regRelayFail = "relay_failed"
)

type metrics struct {
	dropped       *prometheus.CounterVec
	relayedPkts   *prometheus.CounterVec // direction: to_exit, from_exit
	relayedBytes  *prometheus.CounterVec
	flows         prometheus.Gauge
	registrations *prometheus.CounterVec
	peers         prometheus.Gauge
	expired       prometheus.Counter
	unregister    func()
}

func newMetrics(reg prometheus.Registerer, role string) (*metrics, error) {
	cl := prometheus.Labels{"role": role}
	m := &metrics{
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nym_wg_relay_dropped_total", ConstLabels: cl,
			Help: "Packets from clients' peers the entry refused to relay, by reason.",
		}, []string{"reason"}),
		relayedPkts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nym_wg_relay_packets_total", ConstLabels: cl,
			Help: "UDP datagrams the entry relayed between clients and exits.",
		}, []string{"direction"}),
		relayedBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nym_wg_relay_bytes_total", ConstLabels: cl,
			Help: "UDP payload bytes the entry relayed between clients and exits.",
		}, []string{"direction"}),
		flows: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "nym_wg_relay_flows", ConstLabels: cl,
			Help: "Open relay sockets (one per client flow to an exit).",
		}),
		registrations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nym_wg_registrations_total", ConstLabels: cl,
			Help: "WireGuard registrations handled, by outcome.",
		}, []string{"outcome"}),
		peers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "nym_wg_peers", ConstLabels: cl,
			Help: "WireGuard peers registered.",
		}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nym_wg_peers_expired_total", ConstLabels: cl,
			Help: "Peers removed after the peer timeout without a handshake.",
		}),
	}
	unreg, err := promreg.Register(reg, m.dropped, m.relayedPkts, m.relayedBytes, m.flows, m.registrations, m.peers, m.expired)
	if err != nil {
		return nil, err
	}
	m.unregister = unreg
	return m, nil
}
