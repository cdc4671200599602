package measure

import (
	"strings"
	"testing"
	"time"

	"github.com/nym-go/nym/anonymity"
)

// handTrace is a trace whose answers are known: two clients on one
// gateway, each with one exit-side flow active in its own half of ten
// seconds; every client sends one packet per 100 ms on its link, cover
// while its flow is quiet and real while it runs (so the stream is the
// same, and only the exit side shows who is active).
func handTrace() ([]anonymity.Record, map[anonymity.NodeID]anonymity.NodeID) {
	const gw, exit = 2, 4
	clients := []anonymity.NodeID{101, 102}
	flows := []anonymity.NodeID{501, 502}
	var recs []anonymity.Record
	var packet uint64 // one id for a frame's two ends, as PacketIDOf gives
	add := func(t int64, node, peer anonymity.NodeID, role, peerRole anonymity.Role, dir anonymity.Dir, cover bool) {
		recs = append(recs, anonymity.Record{
			Event: anonymity.Event{Time: t, Node: node, Peer: peer, Size: 2048, Role: role, PeerRole: peerRole, Dir: dir},
			Truth: anonymity.Truth{Packet: packet, Cover: cover},
		})
	}
	ms := int64(time.Millisecond)
	for i, c := range clients {
		for k := range 100 {
			t := int64(k) * 100 * ms
			active := k/50 == i
			// Up: the client's send, the gateway's receipt, the exit's
			// packet out (real only) a few ms later.
			packet++
			add(t, c, gw, anonymity.RoleClient, anonymity.RoleGateway, anonymity.Out, !active)
			add(t+ms, gw, c, anonymity.RoleGateway, anonymity.RoleClient, anonymity.In, false)
			// Down: the gateway's push and the client's receipt.
			packet++
			add(t+50*ms, gw, c, anonymity.RoleGateway, anonymity.RoleClient, anonymity.Out, false)
			add(t+51*ms, c, gw, anonymity.RoleClient, anonymity.RoleGateway, anonymity.In, !active)
			if active {
				add(t+30*ms, exit, flows[i], anonymity.RoleExit, anonymity.RoleHost, anonymity.Out, false)
				add(t+40*ms, exit, flows[i], anonymity.RoleExit, anonymity.RoleHost, anonymity.In, false)
			}
		}
	}
	return recs, map[anonymity.NodeID]anonymity.NodeID{501: 101, 502: 102}
}

func TestAnalyseHandTrace(t *testing.T) {
	recs, owners := handTrace()
	row, err := Analyse("hand", recs, owners, nil)
	if err != nil {
		t.Fatal(err)
	}
	if row.Clients != 2 || row.Flows != 2 {
		t.Fatalf("clients %d, flows %d; want 2, 2", row.Clients, row.Flows)
	}
	// The gateway's link streams are the same active or not; only the
	// labels differ, so the attacker, which sees counts on the links, is
	// at chance: both clients' series are flat, its scores all 0, and it
	// picks the first client for both flows.
	if row.Up.Correct != 1 || row.Down.Correct != 1 || row.Up.Chance != 0.5 {
		t.Errorf("up %+v, down %+v: want 1 of 2 right (the flat series tie)", row.Up, row.Down)
	}
	if row.CoverJoined != "400 of 400" {
		t.Errorf("cover truth joined onto %s gateway records, want all 400", row.CoverJoined)
	}
	if row.CoverUp.Real != 100 || row.CoverUp.Cover != 100 || row.CoverDown.Real != 100 {
		t.Errorf("cover up %+v, down %+v: labels not carried onto the gateway's records", row.CoverUp, row.CoverDown)
	}
	if row.CoverUp.Sizes.D != 0 || row.CoverUp.Gaps.P < 0.5 {
		t.Errorf("cover up %+v: identical streams should not differ", row.CoverUp)
	}
	var b strings.Builder
	if err := WriteTable(&b, []Row{row}); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + b.String())
	for _, want := range []string{"| hand | 2 |", "50% (1/2;", "| 50% |"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}

// When the exit's flows follow bursts on the links, the attacker finds
// them: the same trace with the idle client silent instead of sending
// cover.
func TestAnalyseHandTraceNoCover(t *testing.T) {
	recs, owners := handTrace()
	var kept []anonymity.Record
	drop := make(map[int64]map[anonymity.NodeID]bool) // the gateway's twin of a dropped cover packet
	for _, r := range recs {
		if r.Role == anonymity.RoleClient && r.Truth.Cover {
			t := r.Time + int64(time.Millisecond)
			if r.Dir == anonymity.In {
				t = r.Time - int64(time.Millisecond)
			}
			if drop[t] == nil {
				drop[t] = make(map[anonymity.NodeID]bool)
			}
			drop[t][r.Node] = true
			continue
		}
		kept = append(kept, r)
	}
	var out []anonymity.Record
	for _, r := range kept {
		if r.Role == anonymity.RoleGateway && drop[r.Time][r.Peer] {
			continue
		}
		out = append(out, r)
	}
	row, err := Analyse("nocover", out, owners, nil)
	if err != nil {
		t.Fatal(err)
	}
	if row.Up.Correct != 2 || row.Down.Correct != 2 {
		t.Errorf("up %+v, down %+v: want both flows matched", row.Up, row.Down)
	}
}

// A client that is no user (the directory's monitor) is left out of the
// attacker's candidates, and of the cover comparison, but not of the
// sender entropy.
func TestAnalyseUsersOnly(t *testing.T) {
	recs, owners := handTrace()
	row, err := Analyse("users", recs, owners, map[anonymity.NodeID]bool{101: true})
	if err != nil {
		t.Fatal(err)
	}
	if row.Clients != 1 || row.CoverUp.Real+row.CoverUp.Cover != 100 {
		t.Errorf("%d candidates, %d packets compared up: want client 102 left out", row.Clients, row.CoverUp.Real+row.CoverUp.Cover)
	}
}
