package gateway

import "github.com/prometheus/client_golang/prometheus"

// dropReason says why a packet for a client, or from one, went nowhere.
type dropReason int

const (
	dropUnknownClient     dropReason = iota // last hop here for an address not known: never connected, or forgotten
	dropClientQueue                         // the client's link queue was full
	dropStorageFull                         // the client already has MaxStoredBytes waiting
	dropStoreQueueFull                      // the database writer is that far behind
	dropStoreError                          // the database refused the write
	dropForwardRefused                      // Forward refused a client packet or an ack
	dropClosed                              // the gateway was already closed
	dropClientsCap                          // not deliverable live to an unrecorded client (new, or over MaxStoredClients), so not stored
	dropRateLimited                         // a client packet over the client's ClientRate
	dropSourceRateLimited                   // a client packet over its source address's SourceRate
	dropNoTicket                            // tickets required and the client has no bytes left
	dropOversize                            // larger than the shaped client's slots hold
	numDropReasons
)

var dropReasonNames = [numDropReasons]string{
	dropUnknownClient:     "unknown_client",
	dropClientQueue:       "client_queue_full",
	dropStorageFull:       "client_storage_full",
	dropStoreQueueFull:    "store_queue_full",
	dropStoreError:        "store_error",
	dropForwardRefused:    "forward_refused",
	dropClosed:            "closed",
	dropClientsCap:        "clients_cap",
	dropRateLimited:       "rate_limited",
	dropSourceRateLimited: "source_rate_limited",
	dropNoTicket:          "no_ticket",
	dropOversize:          "oversize_for_slot",
}

// metrics are the gateway's Prometheus metrics. Counters are resolved once so
// the packet path never looks up a label. There are no per-client labels:
// they would grow without bound and put client identities in the metrics.
type metrics struct {
	clientsConnected   prometheus.Gauge
	clientsRecorded    prometheus.Gauge   // identities with a database record
	clientsProvisional prometheus.Gauge   // of those, recorded before they showed life
	clientsNotKept     prometheus.Counter // served unrecorded: over MaxStoredClients
	clientsForgotten   prometheus.Counter // records deleted after ClientRetention
	clientsRefused     prometheus.Counter // over MaxClients
	clientsKicked      prometheus.Counter // too many malformed messages
	badMessages        prometheus.Counter
	ignoredFrames      prometheus.Counter
	bytesIn            prometheus.Counter
	bytesOut           prometheus.Counter

	forwarded        prometheus.Counter // client packets handed to Forward
	acksSent         prometheus.Counter
	deliveredLive    prometheus.Counter
	deliveredStored  prometheus.Counter
	deliveredService prometheus.Counter
	stored           prometheus.Counter
	expired          prometheus.Counter
	evicted          prometheus.Counter // stored packets deleted for MaxStoredBytesTotal
	storedBytes      prometheus.Gauge   // bytes of stored records in the database
	storeCommits     prometheus.Counter
	shapedSessions   prometheus.Counter // sessions whose downstream is shaped
	shapedSlots      prometheus.Counter // slots sent on shaped downstreams
	shapedCover      prometheus.Counter // of those, carrying nothing
	dropped          [numDropReasons]prometheus.Counter

	tickets       [numTicketOutcomes]prometheus.Counter
	doubleSpends  prometheus.Counter // serials shown here found spent at another gateway too
	ticketBytes   prometheus.Counter // bytes bought by accepted tickets
	clientsUnpaid prometheus.Counter // connections closed for want of a ticket
	spentSerials  prometheus.Gauge
	reports       [numReportOutcomes]prometheus.Counter

	collectors []prometheus.Collector
}

func newMetrics() *metrics {
	const ns, sub = "nym", "gateway"
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help})
	}
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help})
	}
	m := &metrics{
		clientsConnected:   gauge("clients_connected", "Clients with an open connection."),
		clientsRecorded:    gauge("clients_recorded", "Client identities recorded in the database, for which packets are stored while they are offline."),
		clientsProvisional: gauge("clients_provisional", "Recorded client identities that have not yet stayed connected RecordClientsAfter; at most MaxProvisionalClients."),
		clientsNotKept:     counter("clients_unrecorded_total", "Client identities that stayed long enough to be recorded but were not, because MaxStoredClients was reached."),
		clientsForgotten:   counter("clients_forgotten_total", "Idle client records deleted after ClientRetention."),
		clientsRefused:     counter("clients_refused_total", "Client connections refused because the gateway was full."),
		clientsKicked:      counter("clients_disconnected_bad_total", "Client connections closed for sending too many malformed messages."),
		badMessages:        counter("client_bad_messages_total", "Malformed messages received from clients."),
		ignoredFrames:      counter("client_ignored_frames_total", "Frames of an unexpected kind received from clients."),
		bytesIn:            counter("client_bytes_in_total", "Frame payload bytes received from clients."),
		bytesOut:           counter("client_bytes_out_total", "Frame payload bytes queued for clients."),
		forwarded:          counter("packets_forwarded_total", "Client packets handed on to their first hop."),
		acksSent:           counter("acks_sent_total", "SURB-acks sent back into the mixnet."),
		deliveredLive:      counter("delivered_live_total", "Packets delivered at once to a connected client."),
		deliveredStored:    counter("delivered_from_store_total", "Stored packets delivered to a client (again, if it reconnected before confirming)."),
		deliveredService:   counter("delivered_service_total", "Packets handed to a local service."),
		stored:             counter("stored_total", "Packets stored for a disconnected client."),
		expired:            counter("expired_total", "Stored packets deleted unread after their TTL."),
		evicted:            counter("evicted_total", "Stored packets deleted unread because the gateway's total storage cap was reached; the largest stores lose their oldest first."),
		storedBytes:        gauge("stored_bytes", "Bytes of stored packets in the database, which MaxStoredBytesTotal bounds."),
		storeCommits:       counter("store_commits_total", "Database write transactions; each batches many operations."),
		shapedSessions:     counter("shaped_sessions_total", "Client connections that asked for a constant-rate downstream."),
		shapedSlots:        counter("shaped_slots_total", "Fixed-length frames sent on constant-rate downstreams."),
		shapedCover:        counter("shaped_cover_slots_total", "Of those, frames that carried nothing (cover)."),
	}
	// vec makes a counter vector of one label and resolves every value
	// into out, in order.
	vec := func(name, help, label string, values []string, out []prometheus.Counter) *prometheus.CounterVec {
		v := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help}, []string{label})
		for i, value := range values {
			out[i] = v.WithLabelValues(value)
		}
		return v
	}
	dropped := vec("packets_dropped_total", "Packets dropped, by reason.", "reason", dropReasonNames[:], m.dropped[:])
	tickets := vec("tickets_total", "Tickets shown by clients, by outcome.", "outcome", ticketOutcomeNames[:], m.tickets[:])
	reports := vec("ticket_redemptions_total", "Reports of spent serials to authorities and fetches of their spent lists, by outcome.",
		"outcome", reportOutcomeNames[:], m.reports[:])
	m.doubleSpends = counter("ticket_double_spends_total", "Ticket serials shown at this gateway that were spent at another gateway too.")
	m.ticketBytes = counter("ticket_bytes_total", "Bytes bought by the tickets accepted here.")
	m.clientsUnpaid = counter("clients_unpaid_total", "Client connections closed because they showed no valid ticket within the grace period.")
	m.spentSerials = gauge("ticket_spent_serials", "Ticket serials in the spent set (spent here or learned from the authorities), until their tickets expire.")
	m.collectors = []prometheus.Collector{
		m.clientsConnected, m.clientsRecorded, m.clientsProvisional, m.clientsNotKept, m.clientsForgotten, m.clientsRefused, m.clientsKicked, m.badMessages, m.ignoredFrames,
		m.bytesIn, m.bytesOut, m.forwarded, m.acksSent, m.deliveredLive, m.deliveredStored,
		m.deliveredService, m.stored, m.expired, m.evicted, m.storedBytes, m.storeCommits, m.shapedSessions, m.shapedSlots, m.shapedCover, dropped,
		tickets, reports, m.doubleSpends, m.ticketBytes, m.clientsUnpaid, m.spentSerials,
	}
	return m
}

func (m *metrics) drop(r dropReason) { m.dropped[r].Inc() }

// reportOutcome labels nym_gateway_ticket_redemptions_total.
type reportOutcome int

const (
	reportSent reportOutcome = iota
	reportFailed
	reportFetched
	reportFetchFailed
	numReportOutcomes
)

var reportOutcomeNames = [numReportOutcomes]string{
	reportSent:        "report_sent",
	reportFailed:      "report_failed",
	reportFetched:     "fetched",
	reportFetchFailed: "fetch_failed",
}
