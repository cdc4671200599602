package anonymity

import (
	"strings"
	"testing"
)

// checkTrace is a small network's trace: client 1 sends frame 0xf1 to
// gateway 2, which sends two packets to mix 3, which forwards them to mix
// 4: the first arrives (and leaves for node 99, which did not record), the
// second is still on the link when the trace ends. Gateway 2 sends frame
// 0xf2 down to client 1. An exit's internet side is recorded too.
func checkTrace() []Record {
	return []Record{
		{Event{Time: 10, Node: 1, Peer: 2, Role: RoleClient, PeerRole: RoleGateway, Dir: Out}, Truth{Packet: 0xf1, Sender: 1}},
		{Event{Time: 11, Node: 2, Peer: 1, Role: RoleGateway, PeerRole: RoleClient, Dir: In}, Truth{Packet: 0xf1, Sender: 1}},
		{Event{Time: 12, Node: 2, Peer: 3, Role: RoleGateway, PeerRole: RoleMix, Dir: Out}, Truth{}},
		{Event{Time: 13, Node: 3, Peer: 2, Role: RoleMix, PeerRole: RoleGateway, Dir: In}, Truth{Packet: 7}},
		{Event{Time: 14, Node: 2, Peer: 3, Role: RoleGateway, PeerRole: RoleMix, Dir: Out}, Truth{}},
		{Event{Time: 15, Node: 3, Peer: 2, Role: RoleMix, PeerRole: RoleGateway, Dir: In}, Truth{Packet: 8}},
		{Event{Time: 20, Node: 3, Peer: 4, Role: RoleMix, PeerRole: RoleMix, Dir: Out}, Truth{Packet: 7}},
		{Event{Time: 21, Node: 4, Peer: 3, Role: RoleMix, PeerRole: RoleMix, Dir: In}, Truth{Packet: 9}},
		{Event{Time: 22, Node: 3, Peer: 4, Role: RoleMix, PeerRole: RoleMix, Dir: Out}, Truth{Packet: 8}},
		{Event{Time: 30, Node: 2, Peer: 1, Role: RoleGateway, PeerRole: RoleClient, Dir: Out}, Truth{Packet: 0xf2}},
		{Event{Time: 31, Node: 1, Peer: 2, Role: RoleClient, PeerRole: RoleGateway, Dir: In}, Truth{Packet: 0xf2}},
		{Event{Time: 40, Node: 5, Peer: 6, Role: RoleExit, PeerRole: RoleHost, Dir: In}, Truth{}},
		{Event{Time: 41, Node: 4, Peer: 99, Role: RoleMix, PeerRole: RoleMix, Dir: Out}, Truth{Packet: 9}},
	}
}

func TestCheckConsistent(t *testing.T) {
	rep, err := Check(checkTrace())
	if err != nil {
		t.Fatal(err)
	}
	// Links 1→2, 2→3, 3→4 and 2→1 (4→99 has one end unrecorded): 5
	// packets across them, 3 through mixes; one on the link 3→4.
	if want := (CheckReport{Links: 4, Packets: 8, InFlight: 1}); rep != want {
		t.Fatalf("report %+v, want %+v", rep, want)
	}
	// Without mix 4's last departure, it holds a packet at the end.
	trace := checkTrace()
	rep, err = Check(trace[:len(trace)-1])
	if err != nil {
		t.Fatal(err)
	}
	if want := (CheckReport{Links: 4, Packets: 7, InFlight: 1, Unmatched: 1}); rep != want {
		t.Fatalf("report %+v, want %+v", rep, want)
	}
}

func TestCheckCatches(t *testing.T) {
	for _, tc := range []struct {
		name   string
		break_ func([]Record) []Record
		want   string
	}{
		{"arrival before departure", func(r []Record) []Record { r[3].Time = 11; return r }, "before it was out"},
		{"arrival never sent", func(r []Record) []Record { return append(r[:2], r[3:]...) }, "only 1 out"},
		{"mix sends what it never got", func(r []Record) []Record { r[6].Truth.Packet = 70; return r }, "never in"},
		{"mix gets a packet twice", func(r []Record) []Record { r[5].Truth.Packet = 7; return r }, "in twice"},
		{"client frame changed on the way", func(r []Record) []Record { r[1].Truth.Packet = 0xf3; return r }, "never out"},
		{"client frame read before it was sent", func(r []Record) []Record { r[10].Time = 29; return r }, "before it was out"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Check(tc.break_(checkTrace()))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one saying %q", err, tc.want)
			}
		})
	}
}

func TestJoinCover(t *testing.T) {
	trace := checkTrace()
	trace[0].Truth.Cover = true // client 1's frame 0xf1 was loop cover
	joined := JoinCover(trace)
	if !joined[1].Truth.Cover {
		t.Error("the gateway's record of the client's cover frame is not cover")
	}
	if trace[1].Truth.Cover {
		t.Error("JoinCover changed its input")
	}
	for i, r := range joined {
		if i != 1 && r != trace[i] {
			t.Errorf("record %d changed: %+v", i, r)
		}
	}
	// Another client's frame under the same id is not joined.
	trace[1].Peer = 7
	if JoinCover(trace)[1].Truth.Cover {
		t.Error("joined a frame of another link")
	}
}
