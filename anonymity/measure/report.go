package measure

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nym-go/nym/anonymity"
)

// Row is one mode's line of the table: what the analyses of package
// anonymity say about one run's traces.
type Row struct {
	Mode    string
	Clients int // N
	Flows   int // exit-side flows scored

	// Entropy is the sender entropy of the packets leaving the last mix
	// layer (Loopix's measure), beside log2 N; in fast mode, which has
	// none, of the packets the entry sends on (anonymity.RelayEntropy).
	Entropy anonymity.EntropyReport
	// Up and Down are the windowed-count attacker's top-1 accuracy at
	// matching exit-side flows to clients, beside 1/N.
	Up, Down anonymity.Accuracy
	// UpAttack and DownAttack are the attacker's settings (counting window,
	// whole trace or each flow's span) that did best (see Windows).
	UpAttack, DownAttack anonymity.CorrelationConfig
	// CoverUp and CoverDown compare real and cover packets on the clients'
	// links at the gateway (In: client to gateway; Out: gateway to client)
	// by size and by gaps in active against idle windows.
	CoverUp, CoverDown anonymity.CoverTest
	// CoverJoined says how many of the gateway's client-link records had
	// their client's twin to take the cover truth from ("k of n"); the
	// rest count as real.
	CoverJoined string
	// Note is anything the reader should know about this row.
	Note string
}

// Analyse computes a row from a run's records. owners maps each exit-side
// flow (its Peer at the exit) to the client that owns it, from the
// runner's own knowledge of who opened which flow. users, if not nil, are
// the clients the attacker chooses among: other clients on the gateways'
// links (the directory's network monitor, which tests gateways with a
// client of its own) are no users, and would only lower chance; they stay
// in the sender entropy, where they are senders like any other.
func Analyse(mode string, records []anonymity.Record, owners map[anonymity.NodeID]anonymity.NodeID, users map[anonymity.NodeID]bool) (Row, error) {
	ev := anonymity.Events(records)
	row := Row{Mode: mode, Entropy: anonymity.SenderEntropy(ev)}
	if users != nil {
		var kept []anonymity.Record
		for _, r := range records {
			if r.Role == anonymity.RoleGateway && r.PeerRole == anonymity.RoleClient && !users[r.Peer] ||
				r.Role == anonymity.RoleClient && !users[r.Node] {
				continue
			}
			kept = append(kept, r)
		}
		records, ev = kept, anonymity.Events(kept)
	}
	var err error
	if row.Up, row.UpAttack, row.Clients, err = bestWindow(ev, anonymity.Upstream, owners); err != nil {
		return row, err
	}
	if row.Down, row.DownAttack, _, err = bestWindow(ev, anonymity.Downstream, owners); err != nil {
		return row, err
	}
	row.Flows = max(row.Up.Total, row.Down.Total)

	gw, joined, matched, total := coverGateway(records)
	row.CoverJoined = fmt.Sprintf("%d of %d", matched, total)
	row.CoverUp = anonymity.CompareCover(joined, gw, anonymity.In, CoverWindow)
	row.CoverDown = anonymity.CompareCover(joined, gw, anonymity.Out, CoverWindow)
	return row, nil
}

// CoverWindow is CompareCover's activity window: a link's gap counts as
// active when its client sent (or got) a real frame in the same window.
// At 1 s every window of a busy tunnel is active (its SURB top-ups, pings
// and receipts are real frames), which leaves no idle gaps to compare;
// 250 ms is about twelve Poisson slots at Nym's defaults.
const CoverWindow = 250 * time.Millisecond

// Windows are the counting windows the attacker tries. One second suits
// Nym's delays (a route's three hops of 15 ms mean and the Poisson slots
// put a packet's two ends mostly in one window) and blurs a flow of the
// nodelay profile, whose ends are milliseconds apart, into whatever else
// its client did that second: measured on a nodelay run of 5 clients, 1 s
// matched 10 of 17 flows upstream, 250 ms 12, 100 ms 16. 25 ms is for
// nodelay's millisecond flows.
var Windows = []time.Duration{25 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond, time.Second}

// bestWindow runs the attacker at each of Windows, over the whole trace
// and over each flow's span, and keeps the most accurate: the ground truth
// picks the setting, so the result is an upper bound on this attacker
// tuned to the mode (a real one would have to pick without it), which is
// what a bound on anonymity should use.
func bestWindow(ev []anonymity.Event, dir anonymity.FlowDir, owners map[anonymity.NodeID]anonymity.NodeID) (best anonymity.Accuracy, attack anonymity.CorrelationConfig, clients int, err error) {
	first := true
	for _, w := range Windows {
		for _, span := range []bool{false, true} {
			cfg := anonymity.CorrelationConfig{Window: w, Span: span}
			c, err := anonymity.CorrelateFlows(ev, dir, cfg)
			if err != nil {
				return best, attack, 0, fmt.Errorf("measure: flow correlation at %v: %w", w, err)
			}
			if a := anonymity.Score(c, owners); first || a.Rate > best.Rate {
				best, attack, clients, first = a, cfg, c.Clients, false
			}
		}
	}
	return best, attack, clients, nil
}

// coverGateway is the gateway whose client links carry the most frames
// (the entry gateway of the run), its records of those links with the
// clients' cover truth joined on (anonymity.JoinCover), and how many of those records
// found their client's twin: a gateway cannot tell a client's cover from
// its real packets (that is the point), only the client's own records
// know.
func coverGateway(records []anonymity.Record) (gw anonymity.NodeID, joined []anonymity.Record, matched, total int) {
	frames := make(map[anonymity.NodeID]int)
	for _, r := range records {
		if r.Role == anonymity.RoleGateway && r.PeerRole == anonymity.RoleClient {
			frames[r.Node]++
		}
	}
	for id, n := range frames {
		if n > frames[gw] || n == frames[gw] && id < gw {
			gw = id
		}
	}
	type key struct {
		client anonymity.NodeID
		packet uint64
	}
	seen := make(map[key]bool)
	for _, r := range records {
		if r.Role == anonymity.RoleClient && r.Peer == gw {
			seen[key{r.Node, r.Truth.Packet}] = true
		}
	}
	for _, r := range records {
		if r.Node == gw && r.PeerRole == anonymity.RoleClient {
			total++
			if seen[key{r.Peer, r.Truth.Packet}] {
				matched++
			}
		}
	}
	// Only the client links: CompareCover takes every record at the node
	// in a direction, and the gateway's mix side is no client's.
	for _, r := range anonymity.JoinCover(records) {
		if r.Node == gw && r.PeerRole == anonymity.RoleClient {
			joined = append(joined, r)
		}
	}
	return gw, joined, matched, total
}

// WriteTable writes rows as a Markdown table, the one README shows.
func WriteTable(w io.Writer, rows []Row) error {
	var b strings.Builder
	b.WriteString("| mode | N | sender entropy mean / p5 (ideal log2 N) | flow correlation upstream (95% CI), best window | downstream (95% CI), best window | chance 1/N | cover KS p up: size / gaps | down: size / gaps |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %d | %.2f / %.2f bits (%.2f) | %s | %s | %.0f%% | %s | %s |\n",
			r.Mode, r.Clients, r.Entropy.Mean, r.Entropy.P5, r.Entropy.Ideal,
			acc(r.Up, r.UpAttack), acc(r.Down, r.DownAttack), 100*r.Up.Chance, cover(r.CoverUp), cover(r.CoverDown))
	}
	for _, r := range rows {
		if r.Mode == FastMode {
			// No mix layer (the entry as a relay: anonymity.RelayEntropy),
			// and no cover to join.
			fmt.Fprintf(&b, "\n%s: %d flows; %d packets sent on by the entry (%d with none from a client inside it); frames on the clients' links at the entry: %d up, %d down",
				r.Mode, r.Flows, len(r.Entropy.Bits), r.Entropy.Unattributed, r.CoverUp.Real, r.CoverDown.Real)
		} else {
			fmt.Fprintf(&b, "\n%s: %d flows; %d packets left the last mix layer (%d of no client); cover truth joined onto %s gateway records (real/cover frames: %d/%d up, %d/%d down)",
				r.Mode, r.Flows, len(r.Entropy.Bits), r.Entropy.Unattributed, r.CoverJoined,
				r.CoverUp.Real, r.CoverUp.Cover, r.CoverDown.Real, r.CoverDown.Cover)
		}
		if r.Note != "" {
			fmt.Fprintf(&b, "; %s", r.Note)
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func acc(a anonymity.Accuracy, cfg anonymity.CorrelationConfig) string {
	if a.Total == 0 {
		return "no flows"
	}
	span := ""
	if cfg.Span {
		span = ", flow span"
	}
	return fmt.Sprintf("%.0f%% (%d/%d; %.0f–%.0f%%) at %v%s", 100*a.Rate, a.Correct, a.Total, 100*a.Low, 100*a.High, cfg.Window, span)
}

func cover(c anonymity.CoverTest) string {
	if c.Cover == 0 {
		return "no cover"
	}
	return fmt.Sprintf("%s / %s", pval(c.Sizes), pval(c.Gaps))
}

// pval shows a KS test's p-value and its distance D: with 10^5 frames a
// test finds differences far too small to matter (D of a few hundredths:
// scheduling jitter), so D says how much the two differ.
func pval(k anonymity.KSResult) string {
	if k.N == 0 || k.M == 0 {
		return "–"
	}
	if k.P < 0.001 {
		return fmt.Sprintf("<0.001 (D %.2f)", k.D)
	}
	return fmt.Sprintf("%.2f (D %.2f)", k.P, k.D)
}

// since is a duration rounded for logs.
func since(t time.Time) time.Duration { return time.Since(t).Round(100 * time.Millisecond) }
