package client

import (
	"time"

	"github.com/nym-go/nym/anonymity"
	"github.com/nym-go/nym/mixnet/link"
)

// traceArrival is a frame from the gateway as the trace records it.
type traceArrival struct {
	at     int64 // Unix ns; 0: not traced
	packet uint64
	size   int // frame payload bytes
}

// sendFrame queues f on the link to the gateway and, with Config.Trace,
// records it: every frame the client sends goes through here. cover is
// the ground truth: loop cover or a cover slot of the Poisson stream.
func (c *Client) sendFrame(conn *link.Conn, f link.Frame, cover bool) bool {
	if c.cfg.Trace == nil {
		return conn.Send(f)
	}
	// Before Send: once written, the link may hand f.Payload back to a
	// pool (f.Done), and the gateway may record the frame before Send
	// returns.
	a := traceArrival{at: time.Now().UnixNano(), packet: anonymity.PacketIDOf(f.Payload), size: len(f.Payload)}
	if !conn.Send(f) {
		return false
	}
	c.traceFrame(anonymity.Out, a, cover)
	return true
}

// traceFrame records one frame on our link to the gateway: the client's
// end of what the gateway records at its end, under the same packet id.
// A zero a.at is stamped now.
func (c *Client) traceFrame(dir anonymity.Dir, a traceArrival, cover bool) {
	self := anonymity.IDOf(c.identity.Public[:])
	var sender anonymity.NodeID
	if dir == anonymity.Out {
		sender = self
	}
	c.cfg.Trace.Record(anonymity.Record{
		Event: anonymity.Event{
			Time: a.at, Node: self, Peer: anonymity.IDOf(c.addr.Gateway[:]),
			Size: uint32(link.WireLen(a.size)), Role: anonymity.RoleClient, PeerRole: anonymity.RoleGateway, Dir: dir,
		},
		Truth: anonymity.Truth{Packet: a.packet, Sender: sender, Cover: cover},
	})
}
