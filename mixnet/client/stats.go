package client

import (
	"sync/atomic"
	"time"
)

// Stats is a snapshot of what a client did.
type Stats struct {
	RealPacketsSent  uint64 // fragments, replies and SURB requests sent
	CoverPacketsSent uint64 // loop cover sent, by either stream
	PacketsDropped   uint64 // packets the link refused or that could not be built
	BuildFailures    uint64 // packets that could not be built (no route)

	AcksReceived    uint64 // fragments acknowledged
	Retransmissions uint64 // fragments sent again after their ack was late
	FragmentsLost   uint64 // fragments given up after the last retransmission
	InFlight        int    // fragments queued or awaiting an ack
	Queued          int    // packets waiting to be sent: queued, being built, or built and waiting for a slot
	AwaitingAck     int    // fragments sent and not yet acknowledged

	MessagesSent     uint64 // messages queued by Send, SendWithReplySURBs, SendRepliablePacket, Reply
	MessagesReceived uint64 // messages handed to the application
	RepliesReceived  uint64 // of which replies through our SURBs
	CoverReceived    uint64 // our loop cover packets that came back

	SURBsHeld            int    // SURBs we hold to reply to others
	SURBsReceived        uint64 // SURBs others gave us
	SURBsSpent           uint64 // SURBs we used, for replies or requests
	SURBsDropped         uint64 // SURBs we held past their key rotation, dropped unused
	SURBRequestsSent     uint64 // requests for more SURBs we sent
	SURBRequestsReceived uint64 // requests for more SURBs we received
	SURBsCreated         uint64 // SURBs we made and gave to others
	ReplyKeysHeld        int    // our SURBs out there, not yet used

	Deliveries          uint64 // packets the gateway delivered to us
	BadDeliveries       uint64 // deliveries that did not decode or open
	DuplicateFragments  uint64 // fragments received twice
	UnmatchedDeliveries uint64 // acks and replies we had no record of (cover acks among them)
	Reconnects          uint64 // times the gateway connection was re-established

	// DownstreamInterval is the interval of the constant-rate downstream
	// the gateway granted on the current connection; zero when unshaped.
	// GatewayCover counts its frames that carried nothing.
	DownstreamInterval time.Duration
	GatewayCover       uint64
	// Slots counts the shaped downstream's frames, ReceiptsSent the
	// Received frames the client sent its gateway.
	Slots, ReceiptsSent uint64
}

// counters are the live values behind Stats.
type counters struct {
	realSent, coverSent, packetsDropped, buildFailures             atomic.Uint64
	acksReceived, retransmissions, fragmentsLost                   atomic.Uint64
	messagesSent, messagesReceived, repliesReceived, coverReceived atomic.Uint64
	surbsReceived, surbsSpent, surbRequestsSent, surbsDropped      atomic.Uint64
	surbRequestsReceived, surbsCreated                             atomic.Uint64
	deliveries, badDeliveries, duplicates, unmatchedDeliveries     atomic.Uint64
	reconnects, gatewayCover, slots, receiptsSent                  atomic.Uint64
	downstreamInterval                                             atomic.Int64
	// queued counts jobs between enqueue (or a retransmission's requeue)
	// and transmission or giving up: the wait a caller's own queue cannot
	// see. Unlike the window it excludes packets sent and awaiting acks.
	queued atomic.Int64
}

// Stats returns the client's counters. It is cheap enough to poll.
func (c *Client) Stats() Stats {
	s := &c.stats
	return Stats{
		RealPacketsSent:      s.realSent.Load(),
		CoverPacketsSent:     s.coverSent.Load(),
		PacketsDropped:       s.packetsDropped.Load(),
		BuildFailures:        s.buildFailures.Load(),
		AcksReceived:         s.acksReceived.Load(),
		Retransmissions:      s.retransmissions.Load(),
		FragmentsLost:        s.fragmentsLost.Load(),
		InFlight:             len(c.window),
		Queued:               int(s.queued.Load()),
		AwaitingAck:          c.acks.len(),
		MessagesSent:         s.messagesSent.Load(),
		MessagesReceived:     s.messagesReceived.Load(),
		RepliesReceived:      s.repliesReceived.Load(),
		CoverReceived:        s.coverReceived.Load(),
		SURBsHeld:            c.surbs.total(),
		SURBsReceived:        s.surbsReceived.Load(),
		SURBsSpent:           s.surbsSpent.Load(),
		SURBsDropped:         s.surbsDropped.Load(),
		SURBRequestsSent:     s.surbRequestsSent.Load(),
		SURBRequestsReceived: s.surbRequestsReceived.Load(),
		SURBsCreated:         s.surbsCreated.Load(),
		ReplyKeysHeld:        c.replyKeys.len(),
		Deliveries:           s.deliveries.Load(),
		BadDeliveries:        s.badDeliveries.Load(),
		DuplicateFragments:   s.duplicates.Load(),
		UnmatchedDeliveries:  s.unmatchedDeliveries.Load(),
		Reconnects:           s.reconnects.Load(),
		DownstreamInterval:   time.Duration(s.downstreamInterval.Load()),
		GatewayCover:         s.gatewayCover.Load(),
		Slots:                s.slots.Load(),
		ReceiptsSent:         s.receiptsSent.Load(),
	}
}

// logLimited logs a warning at most once a second: the events it reports
// (bad packets, missing routes) can come at packet rate.
func (c *Client) logLimited(msg string, args ...any) {
	now := time.Now().UnixNano()
	last := c.lastWarn.Load()
	if now-last < int64(time.Second) || !c.lastWarn.CompareAndSwap(last, now) {
		c.log.Debug(msg, args...)
		return
	}
	c.log.Warn(msg, args...)
}
