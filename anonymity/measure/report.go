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
	// layer (Loopix's measure), beside log2 N.
	Entropy anonymity.EntropyReport
	// Up and Down are the windowed-count attacker's top-1 accuracy at
	// matching exit-side flows to clients, beside 1/N.
	Up, Down anonymity.Accuracy
	// UpWindow and DownWindow are the counting windows at which the
	// attacker did best (see Windows).
	UpWindow, DownWindow time.Duration
	// CoverUp and CoverDown compare real and cover packets on the clients'
	// links at the gateway (In: client to gateway; Out: gateway to client)
	// by size and by gaps in active against idle windows.
	CoverUp, CoverDown anonymity.CoverTest
	// CoverAt says where the cover comparison was made: "gateway" when the
	// client's ground truth could be carried onto the gateway's records of
	// its link, "client" when it was made at the client's end of the link.
	CoverAt string
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
	if row.Up, row.UpWindow, row.Clients, err = bestWindow(ev, anonymity.Upstream, owners); err != nil {
		return row, err
	}
	if row.Down, row.DownWindow, _, err = bestWindow(ev, anonymity.Downstream, owners); err != nil {
		return row, err
	}
	row.Flows = max(row.Up.Total, row.Down.Total)

	gw, labelled, ok := labelCover(records)
	row.CoverAt = "gateway"
	if !ok {
		row.CoverAt = "client"
	}
	row.CoverUp = anonymity.CompareCover(labelled, gw, anonymity.In, 0)
	row.CoverDown = anonymity.CompareCover(labelled, gw, anonymity.Out, 0)
	return row, nil
}

// Windows are the counting windows the attacker tries. One second suits
// Nym's delays (a route's three hops of 15 ms mean and the Poisson slots
// put a packet's two ends mostly in one window) and blurs a flow of the
// nodelay profile, whose ends are milliseconds apart, into whatever else
// its client did that second: measured on a nodelay run of 5 clients, 1 s
// matched 10 of 17 flows upstream, 250 ms 12, 100 ms 16.
var Windows = []time.Duration{100 * time.Millisecond, 250 * time.Millisecond, time.Second}

// bestWindow runs the attacker at each of Windows and keeps the most
// accurate: the ground truth picks the window, so the result is an upper
// bound on this attacker tuned to the mode (a real one would have to pick
// without it), which is what a bound on anonymity should use.
func bestWindow(ev []anonymity.Event, dir anonymity.FlowDir, owners map[anonymity.NodeID]anonymity.NodeID) (best anonymity.Accuracy, window time.Duration, clients int, err error) {
	for i, w := range Windows {
		c, err := anonymity.CorrelateFlows(ev, dir, anonymity.CorrelationConfig{Window: w})
		if err != nil {
			return best, 0, 0, fmt.Errorf("measure: flow correlation at %v: %w", w, err)
		}
		if a := anonymity.Score(c, owners); i == 0 || a.Rate > best.Rate {
			best, window, clients = a, w, c.Clients
		}
	}
	return best, window, clients, nil
}

// coverView is the id under which labelCover files the clients' own
// records when it cannot label the gateway's: no node has it (ids are
// hashes, never 0).
const coverView anonymity.NodeID = 0

// labelCover returns the records of the clients' links, as seen at their
// gateway, labelled real or cover from the clients' own ground truth. A
// gateway cannot tell a client's cover from its real packets (that is the
// point), so its records of client frames carry no such label; the
// clients' records (Role RoleClient) do, and both ends give a frame the
// same packet id (anonymity.PacketIDOf its payload). A gateway's record
// is labelled cover if either end says so (the gateway knows its own
// cover). When at least 99% of the gateway's records find their client's
// twin, the labelled gateway records are returned with its id; when not
// (clients not traced, or frames one end records and the other does
// not), the clients' own records are returned instead, filed as if seen
// at a gateway with id coverView: the same link, watched from its other
// end; ok is then false.
func labelCover(records []anonymity.Record) (gw anonymity.NodeID, out []anonymity.Record, ok bool) {
	type key struct {
		client anonymity.NodeID
		dir    anonymity.Dir // at the gateway
		packet uint64
	}
	own := make(map[key]bool) // cover, by frame
	var mine []anonymity.Record
	for _, r := range records {
		if r.Role != anonymity.RoleClient {
			continue
		}
		d := anonymity.In // a client's Out is its gateway's In
		if r.Dir == anonymity.In {
			d = anonymity.Out
		}
		own[key{r.Node, d, r.Truth.Packet}] = r.Truth.Cover
		r.Node, r.Peer, r.Role, r.PeerRole, r.Dir = coverView, r.Node, anonymity.RoleGateway, anonymity.RoleClient, d
		mine = append(mine, r)
	}
	gws := make(map[anonymity.NodeID]bool)
	var matched, unmatched int
	for _, r := range records {
		if r.Role != anonymity.RoleGateway || r.PeerRole != anonymity.RoleClient {
			continue
		}
		gws[r.Node] = true
		cover, found := own[key{r.Peer, r.Dir, r.Truth.Packet}]
		if !found || r.Truth.Packet == 0 {
			unmatched++
			continue
		}
		matched++
		r.Truth.Cover = r.Truth.Cover || cover
		out = append(out, r)
		gw = r.Node
	}
	if len(gws) == 1 && matched > 0 && unmatched*100 <= matched+unmatched {
		return gw, out, true
	}
	return coverView, mine, false
}

// WriteTable writes rows as a Markdown table, the one README shows.
func WriteTable(w io.Writer, rows []Row) error {
	var b strings.Builder
	b.WriteString("| mode | N | sender entropy mean / p5 (ideal log2 N) | flow correlation upstream (95% CI), best window | downstream (95% CI), best window | chance 1/N | cover KS p up: size / gaps | down: size / gaps |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %d | %.2f / %.2f bits (%.2f) | %s | %s | %.0f%% | %s | %s |\n",
			r.Mode, r.Clients, r.Entropy.Mean, r.Entropy.P5, r.Entropy.Ideal,
			acc(r.Up, r.UpWindow), acc(r.Down, r.DownWindow), 100*r.Up.Chance, cover(r.CoverUp), cover(r.CoverDown))
	}
	for _, r := range rows {
		fmt.Fprintf(&b, "\n%s: %d flows; %d packets left the last mix layer (%d of no client); cover compared at the %s end of the links (real/cover packets: %d/%d up, %d/%d down)",
			r.Mode, r.Flows, len(r.Entropy.Bits), r.Entropy.Unattributed, r.CoverAt,
			r.CoverUp.Real, r.CoverUp.Cover, r.CoverDown.Real, r.CoverDown.Cover)
		if r.Note != "" {
			fmt.Fprintf(&b, "; %s", r.Note)
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func acc(a anonymity.Accuracy, w time.Duration) string {
	if a.Total == 0 {
		return "no flows"
	}
	return fmt.Sprintf("%.0f%% (%d/%d; %.0f–%.0f%%) at %v", 100*a.Rate, a.Correct, a.Total, 100*a.Low, 100*a.High, w)
}

func cover(c anonymity.CoverTest) string {
	if c.Cover == 0 {
		return "no cover"
	}
	return fmt.Sprintf("%s / %s", pval(c.Sizes), pval(c.Gaps))
}

func pval(k anonymity.KSResult) string {
	if k.N == 0 || k.M == 0 {
		return "–"
	}
	if k.P < 0.001 {
		return "<0.001"
	}
	return fmt.Sprintf("%.2f", k.P)
}

// since is a duration rounded for logs.
func since(t time.Time) time.Duration { return time.Since(t).Round(100 * time.Millisecond) }
