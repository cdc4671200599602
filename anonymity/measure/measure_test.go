package measure

import (
	"flag"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nym-go/nym/vpn"
)

var report = flag.Bool("anonymity.report", false, "run the anonymity measurement (every mode, N clients) and print its table")

// envInt reads a positive integer from the environment, or def.
func envInt(t *testing.T, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil || v <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, s)
	}
	return v
}

// TestAnonymityReport is `make anonymity`: every mode measured with N
// clients (NYM_ANONYMITY_CLIENTS, default 10) for NYM_ANONYMITY_SECONDS of
// workload each (default 60), and the table printed. NYM_ANONYMITY_MODES
// (comma-separated: default, anonymous-plus, nodelay, fast) picks some. It runs only when
// asked (-anonymity.report or NYM_ANONYMITY_REPORT=1): minutes of CPU.
func TestAnonymityReport(t *testing.T) {
	if !*report && os.Getenv("NYM_ANONYMITY_REPORT") == "" {
		t.Skip("the anonymity measurement runs with -anonymity.report or NYM_ANONYMITY_REPORT=1 (make anonymity)")
	}
	n := envInt(t, "NYM_ANONYMITY_CLIENTS", 10)
	d := time.Duration(envInt(t, "NYM_ANONYMITY_SECONDS", 60)) * time.Second
	start := time.Now()
	var rows []Row
	// Anonymous-plus runs fewer clients: at 200 packets/s each (nine
	// X25519 ladders to build one, one more at every hop), ten of them are
	// more than two shared cores carry in one process, and a starved
	// network measures nothing (flows stall; measured: no byte moved with
	// 4 clients at load 12, while 2 ran).
	plus := envInt(t, "NYM_ANONYMITY_PLUS_CLIENTS", min(n, 3))
	// Fast mode last: two hops of nested WireGuard, no mixing, no cover.
	for _, m := range []struct {
		p    vpn.Profile
		n    int
		fast bool
	}{{vpn.DefaultProfile(), n, false}, {vpn.AnonymousPlusProfile(), plus, false}, {vpn.NoDelayProfile(), n, false}, {n: n, fast: true}} {
		// At least three flows per client that has any (idle ones have
		// none), for at most 2.5 × the duration: the table's ten minutes.
		o := Options{Profile: m.p, Fast: m.fast, Clients: m.n, Duration: d, MinFlows: 3 * (m.n - m.n/4),
			MaxDuration: d * 5 / 2, Seed: 18, Log: t.Logf}
		if modes := os.Getenv("NYM_ANONYMITY_MODES"); modes != "" && !slices.Contains(strings.Split(modes, ","), o.name()) {
			continue
		}
		row, err := Measure(t, o)
		if err != nil {
			t.Fatalf("%s: %v", o.name(), err)
		}
		rows = append(rows, row)
	}
	var b strings.Builder
	if err := WriteTable(&b, rows); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d clients, %v of workload per mode, whole run %v", n, d, since(start))
	os.Stdout.WriteString("\n" + b.String())
}

// TestTimingAnonymityDefault keeps the mixing honest: a short run of N = 5
// clients at Nym's defaults, where the windowed-count attacker must not
// match upstream flows to their clients much better than chance, and the
// same run with the nodelay profile, where it must (else the attacker, not
// the mixing, would be what fails to see), and so must it in fast mode,
// which neither mixes nor pads. Timing-sensitive (the workloads
// run on the wall clock, and a starved network carries less), so it runs
// apart from the race detector, as make test runs TestTiming* tests. The
// default run goes on past its 40 s until 10 flows have carried data (at
// most 2 min), the nodelay run past 30 s likewise: about 80 s in all on a
// quiet machine, 4 min at load 16-50. Fast mode's run, 5 s until 10 flows
// (at most a minute), adds about 10 s.
func TestTimingAnonymityDefault(t *testing.T) {
	if testing.Short() {
		t.Skip("a minute of CPU")
	}
	const n = 5
	run := func(p vpn.Profile, d time.Duration) Row {
		row, err := Measure(t, Options{Profile: p, Clients: n, Duration: d, MinFlows: 10, MaxDuration: 2 * time.Minute, Seed: 5, Log: t.Logf})
		if err != nil {
			t.Fatalf("%s: %v", p.Name, err)
		}
		var b strings.Builder
		WriteTable(&b, []Row{row})
		t.Logf("\n%s", b.String())
		return row
	}
	def := run(vpn.DefaultProfile(), 40*time.Second)
	if def.Up.Total < minFlows {
		// Seen at load 18-50: tunnels at Nym's defaults that move almost
		// nothing in two minutes. Too few flows say nothing about the
		// mixing either way (one more or less right swings the rate by
		// 25%); a broken network fails vpn's own tests.
		t.Skipf("default: only %d flows scored in the time allowed (want %d): the machine is too loaded to measure", def.Up.Total, minFlows)
	}
	if def.Up.Rate > maxDefaultUp {
		t.Errorf("default profile: upstream flow correlation %.0f%% (%d/%d), above the bound %.0f%% (chance %.0f%%): the mixing or the cover got weaker",
			100*def.Up.Rate, def.Up.Correct, def.Up.Total, 100*maxDefaultUp, 100*def.Up.Chance)
	}
	nd := run(vpn.NoDelayProfile(), 30*time.Second)
	if nd.Up.Total < minFlows {
		t.Skipf("nodelay: only %d flows scored (want %d): the machine is too loaded to measure", nd.Up.Total, minFlows)
	}
	if nd.Up.Rate < minNoDelayUp {
		t.Errorf("nodelay profile: upstream flow correlation %.0f%% (%d/%d), want at least %.0f%%: the attacker is broken",
			100*nd.Up.Rate, nd.Up.Correct, nd.Up.Total, 100*minNoDelayUp)
	}
	// Fast mode, which neither mixes nor pads: its flows are matched both
	// ways, which is the finding README states.
	fast, err := Measure(t, Options{Fast: true, Clients: n, Duration: 5 * time.Second, MinFlows: 10, MaxDuration: time.Minute, Seed: 5, Log: t.Logf})
	if err != nil {
		t.Fatalf("fast: %v", err)
	}
	var b strings.Builder
	WriteTable(&b, []Row{fast})
	t.Logf("\n%s", b.String())
	if fast.Up.Total < minFlows {
		t.Skipf("fast: only %d flows scored (want %d): the machine is too loaded to measure", fast.Up.Total, minFlows)
	}
	if fast.Up.Rate < minFast || fast.Down.Rate < minFast {
		t.Errorf("fast mode: flow correlation %d/%d upstream, %d/%d downstream, want at least %.0f%% each: fast mode does not hide timing, so the attacker is broken",
			fast.Up.Correct, fast.Up.Total, fast.Down.Correct, fast.Down.Total, 100*minFast)
	}
}

// Bounds of TestTimingAnonymityDefault, from its runs and the table's
// (anonymity/measure, load 10-50 on the 2 shared cores):
//   - default, upstream: 3/11 (27%), 1/7, 2/8 and 2/4 at N = 5 (chance
//     20%), 2/7 at N = 10. The bound, 60%, is three times chance: at a
//     true rate of 25% the chance of 7 or more of 11 flows is about 1%,
//     while the nodelay profile's rates (below) would cross it.
//   - nodelay, upstream: 9/13 (69%) and 16/17 at N = 5, 36/47 (77%) at
//     N = 10. The windowed-count attacker is no perfect one (flows of one
//     client overlap; a bulk client's steady stream takes short flows
//     from others), so the sanity check asks for 50%, 2.5 × chance: at 75%
//     the chance of 6 or fewer of 13 is about 1%.
//   - fast, both ways: 11/11 at N = 5 (quiet), 5/6 with -race at load 14.
//     The bound, 60%, is three times chance: at a true rate of 90% the
//     chance of fewer than 6 of 10 right is below 0.2%.
const (
	minFlows     = 6
	maxDefaultUp = 0.6
	minNoDelayUp = 0.5
	minFast      = 0.6
)
