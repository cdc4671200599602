package authority

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nym-go/nym/mixnet/directory"
)

// TestApprovalMode: with admission = approval, nodes that prove their keys
// still wait for the operator; approving them (the file `nym-api nodes
// approve` writes, while the authority runs) seats them at the next probe
// round, and rejecting one takes its seat and refuses its registrations.
func TestApprovalMode(t *testing.T) {
	s, clock := newTestServer(t, Config{Admission: Admission{Mode: AdmissionApproval}})
	ts := httptest.NewServer(s)
	defer ts.Close()
	nodes := network(t)
	register(t, ts.URL, s, nodes...)
	top := settle(t, s, clock)
	if got := seatsOf(top, nodes); got != 0 {
		t.Fatalf("%d unapproved nodes hold seats", got)
	}
	_, body := postFrom(t, ts.URL, "", nodes[0].signed(t, s.cfg.Now()))
	if !strings.Contains(body, "awaits approval") {
		t.Fatalf("registration answer does not say the node awaits approval: %s", body)
	}

	var ids []directory.Key
	for _, n := range nodes {
		ids = append(ids, n.id())
	}
	if err := Decide(s.cfg.DataDir, DecisionApprove, "test", ids, time.Now()); err != nil {
		t.Fatal(err)
	}
	s.probeRound(context.Background(), nil) // rereads the decisions; the network is incomplete, so it fills at once
	requireSeated(t, s.Topology(), nodes)

	victim := nodes[2]
	if err := Decide(s.cfg.DataDir, DecisionReject, "", []directory.Key{victim.id()}, time.Now()); err != nil {
		t.Fatal(err)
	}
	s.probeRound(context.Background(), nil)
	nextEpoch(s, clock)
	if role, _ := s.Topology().RoleOf(victim.id()); role != directory.RoleNone {
		t.Fatalf("rejected node still plays %v", role)
	}
	if status, body := postFrom(t, ts.URL, "", victim.signed(t, s.cfg.Now())); status != http.StatusForbidden {
		t.Fatalf("rejected node's registration: %d %s", status, body)
	}
	got, err := LoadDecisions(s.cfg.DataDir)
	if err != nil || len(got) != len(nodes) || got[victim.id()].Decision != DecisionReject || got[nodes[0].id()].Note != "test" {
		t.Fatalf("decisions on disk: %v %v", got, err)
	}
}
