package router

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/nym-go/nym/ipr"
)

// DropReason says why the router let an IP packet go.
type DropReason int

// Drop reasons.
const (
	DropMalformed     DropReason = iota // not a well-formed IP packet, or a bad bundle entry
	DropSpoofed                         // a client's packet with a source address not its own
	DropPolicy                          // refused by the exit policy
	DropNoSession                       // from the TUN to an address no session holds
	DropQueueFull                       // the session's queue hit its hard limit
	DropSojourn                         // CoDel: waited too long in the session's queue
	DropTooBig                          // from the TUN, larger than a bundle can carry
	DropTUNWrite                        // the TUN refused the write
	DropSessionClosed                   // still queued when its session ended
	NumDropReasons
)

var dropReasonNames = [NumDropReasons]string{
	DropMalformed:     "malformed",
	DropSpoofed:       "spoofed",
	DropPolicy:        "policy",
	DropNoSession:     "no_session",
	DropQueueFull:     "queue_full",
	DropSojourn:       "sojourn",
	DropTooBig:        "too_big",
	DropTUNWrite:      "tun_write",
	DropSessionClosed: "session_closed",
}

func (r DropReason) String() string {
	if r >= 0 && r < NumDropReasons {
		return dropReasonNames[r]
	}
	return fmt.Sprintf("drop(%d)", int(r))
}

// Stats is a snapshot of the router's counters. Up is client → internet,
// down is internet → client.
type Stats struct {
	Sessions        int    // sessions open now
	Queued          int    // IP packets waiting in the sessions' downstream queues now
	SessionsOpened  uint64 // Connects that made a session
	SessionsMoved   uint64 // sessions taken over by a new sender tag with the session's nonce
	SessionsExpired uint64 // sessions ended after the idle timeout
	SessionsClosed  uint64 // sessions ended by Disconnect or Close
	ConnectsRefused uint64 // ConnectFail responses
	ConnectsOverCap uint64 // Connects refused: the sender held MaxAddrsPerSender pairs (also in ConnectsRefused)
	WantRefused     uint64 // Connects whose wanted addresses were not the session's own; they got others

	RequestsIn      uint64 // requests handed to HandleRequest
	BadRequests     uint64 // requests that did not parse
	DataNoSession   uint64 // Data requests from senders without a session
	RequestsNoSURB  uint64 // requests dropped: they needed an answer and the sender left no SURB
	RequestsDropped uint64 // requests Submit dropped: the sender's queue or the router's was full
	RepliesSent     uint64 // responses the Reply callback took
	RepliesFailed   uint64 // responses the Reply callback refused (no SURB left, say)
	PolicyRefusals  uint64 // packets the policy refused (also in Drops)
	PolicyInfosSent uint64 // Info responses that reported a refusal
	ICMPTooBigSent  uint64 // ICMP "too big" errors written to the TUN for packets dropped as DropTooBig
	Starved         uint64 // times a session's stream had data but no SURB to send it with
	LowSURBInfos    uint64 // Info responses that asked a client for more SURBs
	StreamsFailed   uint64 // sessions whose downstream stream could not be opened

	PacketsUp, BytesUp     uint64 // IP packets written to the TUN
	PacketsDown, BytesDown uint64 // IP packets put into downstream bundles
	BundlesUp, BundlesDown uint64 // Data messages received / handed out

	Drops   [NumDropReasons]uint64
	Reorder ipr.ReorderStats // upstream resequencing, all sessions
}

// counters are the live values behind Stats.
type counters struct {
	sessionsOpened, sessionsMoved, sessionsExpired, sessionsClosed, connectsRefused atomic.Uint64
	requestsIn, badRequests, dataNoSession, repliesSent, repliesFailed              atomic.Uint64
	policyRefusals, policyInfosSent, icmpTooBigSent                                 atomic.Uint64
	starved, lowSURBInfos, streamsFailed                                            atomic.Uint64
	requestsNoSURB, requestsQueueFull, connectsOverCap, wantRefused                 atomic.Uint64
	packetsUp, bytesUp, packetsDown, bytesDown, bundlesUp, bundlesDown              atomic.Uint64
	drops                                                                           [NumDropReasons]atomic.Uint64

	reorderMu sync.Mutex
	reorder   ipr.ReorderStats
}

func (c *counters) drop(r DropReason, n int) {
	if n > 0 {
		c.drops[r].Add(uint64(n))
	}
}

func (c *counters) addReorder(delta ipr.ReorderStats) {
	if delta == (ipr.ReorderStats{}) {
		return
	}
	c.reorderMu.Lock()
	c.reorder.Add(delta)
	c.reorderMu.Unlock()
}

func (c *counters) snapshot() Stats {
	s := Stats{
		SessionsOpened:  c.sessionsOpened.Load(),
		SessionsMoved:   c.sessionsMoved.Load(),
		SessionsExpired: c.sessionsExpired.Load(),
		SessionsClosed:  c.sessionsClosed.Load(),
		ConnectsRefused: c.connectsRefused.Load(),
		ConnectsOverCap: c.connectsOverCap.Load(),
		WantRefused:     c.wantRefused.Load(),
		RequestsIn:      c.requestsIn.Load(),
		BadRequests:     c.badRequests.Load(),
		DataNoSession:   c.dataNoSession.Load(),
		RequestsNoSURB:  c.requestsNoSURB.Load(),
		RequestsDropped: c.requestsQueueFull.Load(),
		RepliesSent:     c.repliesSent.Load(),
		RepliesFailed:   c.repliesFailed.Load(),
		PolicyRefusals:  c.policyRefusals.Load(),
		PolicyInfosSent: c.policyInfosSent.Load(),
		ICMPTooBigSent:  c.icmpTooBigSent.Load(),
		Starved:         c.starved.Load(),
		LowSURBInfos:    c.lowSURBInfos.Load(),
		StreamsFailed:   c.streamsFailed.Load(),
		PacketsUp:       c.packetsUp.Load(),
		BytesUp:         c.bytesUp.Load(),
		PacketsDown:     c.packetsDown.Load(),
		BytesDown:       c.bytesDown.Load(),
		BundlesUp:       c.bundlesUp.Load(),
		BundlesDown:     c.bundlesDown.Load(),
	}
	for i := range c.drops {
		s.Drops[i] = c.drops[i].Load()
	}
	c.reorderMu.Lock()
	s.Reorder = c.reorder
	c.reorderMu.Unlock()
	return s
}
