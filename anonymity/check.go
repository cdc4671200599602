package anonymity

import (
	"cmp"
	"fmt"
	"slices"
)

// CheckReport sums up a consistent trace.
type CheckReport struct {
	Links     int // links between two recorders, checked end to end
	Packets   int // packets matched across a link or through a mix
	InFlight  int // sent on a link, not (yet) received when the trace ended
	Unmatched int // into a mix and never out: held or dropped when the trace ended
}

// Check verifies a trace merged from the files of several recorders (nodes
// and clients) against itself: the causality any honest recording of one
// network obeys. On every link whose two ends both recorded, nothing
// arrived that was not sent, and the k-th packet in at the far end arrived
// no earlier than the k-th sent from the near end (links are FIFO); on a
// client's link, where both ends name a frame by PacketIDOf, each frame in
// was sent under the same id, earlier. At a mix, every packet out (by
// Truth.Packet) went in there first. Packets
// sent but not received, or held in a mix, when recording stopped are
// counted, not errors. Check returns the first inconsistency it finds.
func Check(records []Record) (CheckReport, error) {
	var rep CheckReport
	recs := slices.Clone(records)
	slices.SortStableFunc(recs, func(a, b Record) int { return cmp.Compare(a.Time, b.Time) })
	// Who recorded: a link is checked only when both ends did.
	// (An exit's internet side does not count: the exit's mixnet client,
	// under the same id, may not record its link.)
	recorder := make(map[NodeID]bool)
	for _, r := range recs {
		if r.Role != RoleExit {
			recorder[r.Node] = true
		}
	}

	type link struct{ from, to NodeID }
	outs := make(map[link][]Record)
	ins := make(map[link][]Record)
	for _, r := range recs {
		if !recorder[r.Peer] || r.Role == RoleExit {
			continue // the far end did not record, or the internet
		}
		if r.Dir == Out {
			outs[link{r.Node, r.Peer}] = append(outs[link{r.Node, r.Peer}], r)
		} else {
			ins[link{r.Peer, r.Node}] = append(ins[link{r.Peer, r.Node}], r)
		}
	}
	for l, in := range ins {
		out := outs[l]
		if len(in) > len(out) {
			return rep, fmt.Errorf("anonymity: link %#x→%#x: %d packets in, only %d out", l.from, l.to, len(in), len(out))
		}
		if in[0].Role == RoleClient || in[0].PeerRole == RoleClient {
			// A client's link: each frame by its id, since the gateway's
			// goroutines may stamp two frames in another order than they
			// queued them.
			sent := make(map[uint64]int64, len(out))
			for _, r := range out {
				sent[r.Truth.Packet] = r.Time
			}
			for _, r := range in {
				t, ok := sent[r.Truth.Packet]
				if !ok {
					return rep, fmt.Errorf("anonymity: client link %#x→%#x: frame %#x in, never out", l.from, l.to, r.Truth.Packet)
				}
				if r.Time < t {
					return rep, fmt.Errorf("anonymity: client link %#x→%#x: frame %#x in at %d, before it was out at %d", l.from, l.to, r.Truth.Packet, r.Time, t)
				}
			}
		} else {
			for k := range in {
				if in[k].Time < out[k].Time {
					return rep, fmt.Errorf("anonymity: link %#x→%#x: packet %d in at %d, before it was out at %d", l.from, l.to, k, in[k].Time, out[k].Time)
				}
			}
		}
		rep.Links++
		rep.Packets += len(in)
		rep.InFlight += len(out) - len(in)
	}
	for l, out := range outs {
		if _, ok := ins[l]; !ok {
			rep.Links++
			rep.InFlight += len(out)
		}
	}

	// Through each mix: out after in, under one packet id.
	type key struct {
		node   NodeID
		packet uint64
	}
	held := make(map[key]int64)
	for _, r := range recs {
		if r.Role != RoleMix || r.Truth.Packet == 0 {
			continue
		}
		k := key{r.Node, r.Truth.Packet}
		switch r.Dir {
		case In:
			if _, dup := held[k]; dup {
				return rep, fmt.Errorf("anonymity: mix %#x: packet %d in twice", r.Node, r.Truth.Packet)
			}
			held[k] = r.Time
		case Out:
			if _, ok := held[k]; !ok {
				return rep, fmt.Errorf("anonymity: mix %#x: packet %d out, never in", r.Node, r.Truth.Packet)
			}
			delete(held, k)
			rep.Packets++
		}
	}
	rep.Unmatched = len(held)
	return rep, nil
}

// JoinCover copies onto a gateway's records of client-link frames the
// ground truth only the client knows: whether the frame was cover. A frame
// is joined by its link (client and gateway) and packet id (PacketIDOf),
// which both ends record; frames the client did not record keep the
// gateway's truth. The result is a new slice; records is left as it was.
// CompareCover at a gateway needs it: the gateway cannot tell cover from
// real, which is the point.
func JoinCover(records []Record) []Record {
	type key struct {
		client, gateway NodeID
		up              bool
		packet          uint64
	}
	cover := make(map[key]bool)
	for _, r := range records {
		if r.Role == RoleClient && r.Truth.Packet != 0 {
			cover[key{r.Node, r.Peer, r.Dir == Out, r.Truth.Packet}] = r.Truth.Cover
		}
	}
	out := slices.Clone(records)
	for i, r := range out {
		if r.Role != RoleGateway || (r.PeerRole != RoleClient && r.PeerRole != RoleExit) {
			continue
		}
		if c, ok := cover[key{r.Peer, r.Node, r.Dir == In, r.Truth.Packet}]; ok {
			out[i].Truth.Cover = c
		}
	}
	return out
}
