package exit_test

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/nym-go/nym/ipr/exit"
	"github.com/nym-go/nym/ipr/router"
)

// An operator's scrape shows the router's counters under stable names, and
// nothing at all while no router runs (zeros would read as counter resets).
func TestCollector(t *testing.T) {
	var st exit.Stats
	running := false
	c := exit.NewCollector(func() (exit.Stats, bool) { return st, running })
	if families := gather(t, c); len(families) != 0 {
		t.Fatalf("%d metric families with no router running, want none", len(families))
	}
	running = true
	st.Router.Sessions = 3
	st.Router.RequestsIn, st.Router.BadRequests, st.Router.DataNoSession = 10, 2, 1
	st.Router.RequestsNoSURB, st.Router.RequestsDropped = 1, 8
	st.Router.ConnectsOverCap, st.Router.WantRefused = 3, 2
	st.Router.PacketsDown, st.Router.BytesDown = 7, 7000
	st.Router.Drops[router.DropSojourn] = 4
	st.Client.Queued = 5
	st.Router.Starved = 6
	for _, tc := range []struct {
		name, labels string
		want         float64
	}{
		{"nym_ipr_sessions", "", 3},
		{"nym_ipr_replies_queued", "", 5},
		{"nym_ipr_requests_total", `outcome="accepted"`, 6},
		{"nym_ipr_requests_total", `outcome="no_surb"`, 1},
		{"nym_ipr_requests_total", `outcome="queue_full"`, 8},
		{"nym_ipr_requests_total", `outcome="connect_over_cap"`, 3},
		{"nym_ipr_requests_total", `outcome="want_refused"`, 2},
		{"nym_ipr_requests_total", `outcome="malformed"`, 2},
		{"nym_ipr_dropped_packets_total", `reason="sojourn"`, 4},
		{"nym_ipr_bytes_total", `direction="down"`, 7000},
		{"nym_ipr_reply_events_total", `event="starved"`, 6},
	} {
		if got := scrape(t, c, tc.name, tc.labels); got != tc.want {
			t.Errorf("%s{%s} = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	// Counters read at different moments must not wrap below zero.
	st.Router.RequestsIn = 1
	if got := scrape(t, c, "nym_ipr_requests_total", `outcome="accepted"`); got != 0 {
		t.Fatalf("accepted = %v with more refusals than requests, want 0", got)
	}
}

// gather collects c through a pedantic registry, which also checks that
// what it collects matches what it describes.
func gather(t *testing.T, c prometheus.Collector) []*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return families
}

// scrape returns the value of the series name{labels} that c exports.
func scrape(t *testing.T, c prometheus.Collector, name, labels string) float64 {
	t.Helper()
	for _, f := range gather(t, c) {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			var parts []string
			for _, l := range m.GetLabel() {
				parts = append(parts, l.GetName()+`="`+l.GetValue()+`"`)
			}
			if strings.Join(parts, ",") != labels {
				continue
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no series %s{%s}", name, labels)
	return 0
}
