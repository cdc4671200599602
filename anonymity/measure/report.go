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
// runner's own knowledge of who opened which flow.
func Analyse(mode string, records []anonymity.Record, owners map[anonymity.NodeID]anonymity.NodeID) (Row, error) {
	ev := anonymity.Events(records)
	row := Row{Mode: mode, Entropy: anonymity.SenderEntropy(ev)}
	up, err := anonymity.CorrelateFlows(ev, anonymity.Upstream, anonymity.CorrelationConfig{})
	if err != nil {
		return row, fmt.Errorf("measure: upstream correlation: %w", err)
	}
	down, err := anonymity.CorrelateFlows(ev, anonymity.Downstream, anonymity.CorrelationConfig{})
	if err != nil {
		return row, fmt.Errorf("measure: downstream correlation: %w", err)
	}
	row.Clients = up.Clients
	row.Up, row.Down = anonymity.Score(up, owners), anonymity.Score(down, owners)
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
	b.WriteString("| mode | N | sender entropy mean / p5 (ideal log2 N) | flow correlation upstream (95% CI) | downstream (95% CI) | chance 1/N | cover KS p up: size / gaps | down: size / gaps |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %d | %.2f / %.2f bits (%.2f) | %s | %s | %.0f%% | %s | %s |\n",
			r.Mode, r.Clients, r.Entropy.Mean, r.Entropy.P5, r.Entropy.Ideal,
			acc(r.Up), acc(r.Down), 100*r.Up.Chance, cover(r.CoverUp), cover(r.CoverDown))
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

func acc(a anonymity.Accuracy) string {
	if a.Total == 0 {
		return "no flows"
	}
	return fmt.Sprintf("%.0f%% (%d/%d; %.0f–%.0f%%)", 100*a.Rate, a.Correct, a.Total, 100*a.Low, 100*a.High)
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
