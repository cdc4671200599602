package measure

import (
	"strings"
	"testing"
	"time"

	"github.com/nym-go/nym/anonymity"
)

// TestFastTrace: a short fast-mode run (N = 5: web, bulk, interactive,
// idle, web) records a trace consistent with itself (anonymity.Check: on
// every link both ends recorded, nothing arrives unsent or before it was
// sent), in which the entry sees every client and the exit every flow.
// About 6 s on a quiet machine, 20 s with -race at load 14. (How well the
// attacker matches fast mode's flows is timing: TestTimingAnonymityDefault.)
func TestFastTrace(t *testing.T) {
	o, err := Options{Fast: true, Clients: 5, Duration: 5 * time.Second, MinFlows: 4, MaxDuration: time.Minute, Seed: 15, Log: t.Logf}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	r, records, err := collect(t, o)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := anonymity.Check(records)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d records: %+v", len(records), rep)
	// Links: each client's, both ways, and the entry's with the exit,
	// both ways.
	if want := 2*o.Clients + 2; rep.Links < want {
		t.Errorf("%d links checked end to end, want at least %d", rep.Links, want)
	}
	owners, err := r.owners(records)
	if err != nil {
		t.Fatal(err)
	}
	users := make(map[anonymity.NodeID]bool)
	for _, id := range r.clients {
		users[id] = true
	}
	row, err := Analyse(FastMode, records, owners, users)
	if err != nil {
		t.Fatal(err)
	}
	row.Entropy = anonymity.RelayEntropy(anonymity.Events(records), wgCarries)
	var b strings.Builder
	WriteTable(&b, []Row{row})
	t.Logf("\n%s", b.String())
	if row.Clients != o.Clients || row.Flows == 0 || len(row.Entropy.Bits) == 0 {
		t.Errorf("%d clients, %d flows, %d packets sent on by the entry: want %d clients and some of each", row.Clients, row.Flows, len(row.Entropy.Bits), o.Clients)
	}
	if row.CoverUp.Cover != 0 || row.CoverDown.Cover != 0 {
		t.Errorf("cover frames up %d, down %d: fast mode sends none", row.CoverUp.Cover, row.CoverDown.Cover)
	}
}
