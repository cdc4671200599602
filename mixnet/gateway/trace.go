package gateway

import (
	"time"

	"github.com/nym-go/nym/anonymity"
	"github.com/nym-go/nym/mixnet/link"
)

// sendFrame queues a gatewire message on a client's link and, with
// Config.Trace, records it: every frame the gateway sends a client goes
// through here, so the trace sees the client's downstream exactly as an
// observer of its link would. cover says the gateway made the frame up
// (ground truth for the trace; the client cannot tell from the wire). done,
// if set, is the frame's link.Frame.Done.
func (g *Gateway) sendFrame(c *link.Conn, payload []byte, cover bool, done func([]byte)) bool {
	if g.cfg.Trace == nil {
		return c.Send(link.Frame{Kind: link.KindClient, Payload: payload, Done: done})
	}
	// Stamped before Send: the client may read the frame before Send
	// returns, and its record of it must not come first.
	at := time.Now().UnixNano()
	if !c.Send(link.Frame{Kind: link.KindClient, Payload: payload, Done: done}) {
		return false
	}
	// Before this returns, the slot's buffer is not built in again: the
	// record may read it after the link let it go.
	g.traceFrame(c.RemoteStatic(), anonymity.Out, at, payload, cover)
	return true
}

// traceFrame records one frame on the link of the client addr. Its packet
// id is anonymity.PacketIDOf the frame's payload, which the client computes
// alike for the same frame: so the client's own trace, which knows which
// of its packets are cover, joins the gateway's.
// A zero at is stamped now.
func (g *Gateway) traceFrame(addr [32]byte, dir anonymity.Dir, at int64, payload []byte, cover bool) {
	peer := anonymity.IDOf(addr[:])
	role := anonymity.RoleClient
	if g.cfg.TraceExit != nil && g.cfg.TraceExit(addr) {
		role = anonymity.RoleExit
	}
	var sender anonymity.NodeID
	if dir == anonymity.In {
		sender = peer // the gateway knows who sends on its links
	}
	g.cfg.Trace.Record(anonymity.Record{
		Event: anonymity.Event{Time: at, Node: g.cfg.TraceSelf, Peer: peer, Size: uint32(link.WireLen(len(payload))), Role: anonymity.RoleGateway, PeerRole: role, Dir: dir},
		Truth: anonymity.Truth{Packet: anonymity.PacketIDOf(payload), Sender: sender, Cover: cover},
	})
}

// Trace is the recorder the gateway traces into, nil when off.
func (g *Gateway) Trace() *anonymity.Recorder { return g.cfg.Trace }
