package gateway

import (
	"context"
	"sync"
	"time"

	"github.com/nym-go/nym/mixnet/ticket"
)

// Redemption: the gateway reports the serials shown to it to every
// authority and fetches back the serials spent anywhere, with those two
// gateways reported flagged double. A ticket spent here cannot be spent here
// again (the spent set answers at once); spent at another gateway it is
// refused here once either gateway's report has reached an authority and
// our next fetch brought it back. A new serial is reported at once, and
// fetches run every ReportInterval, so the window in which one ticket can
// buy bytes at two gateways is about one interval (plus the time a report
// takes to arrive). Within it a double spender gains at most one quota per
// extra gateway, and loses it again: a gateway that learns a serial it
// accepted was spent elsewhere too takes back what is left of that
// ticket's quota from the client that paid with it.

// kickReports asks the report loop to report now, without waiting for the
// interval.
func (g *Gateway) kickReports() {
	select {
	case g.reportKick <- struct{}{}:
	default:
	}
}

// runTickets is the ticket janitor and the redemption loop; Serve owns it.
func (g *Gateway) runTickets(ctx context.Context) {
	tc := &g.cfg.Tickets
	g.spent.restorePending(g.allAuthorities())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		// A quarter of the grace between looks: a connection that does not
		// pay is closed within 1.25 × Grace.
		t := time.NewTicker(max(tc.Grace/4, 10*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				g.closeUnpaid()
			}
		}
	}()
	defer wg.Wait()

	t := time.NewTicker(tc.ReportInterval)
	defer t.Stop()
	for {
		g.reportRound(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-g.reportKick:
		}
	}
}

// reportRound reports to and fetches from every authority, in parallel, and
// prunes the spent set. An authority that does not answer is asked again
// next round; the others' answers are enough meanwhile.
func (g *Gateway) reportRound(ctx context.Context) {
	var wg sync.WaitGroup
	for i := range g.cfg.Tickets.Authorities {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.redeemWith(ctx, i)
		}()
	}
	wg.Wait()
	if n, err := g.spent.prune(g.now()); err != nil {
		g.log.Error("spent set", "err", err)
	} else if n > 0 {
		g.log.Debug("spent serials pruned after expiry", "count", n)
	}
	g.metrics.spentSerials.Set(float64(g.spent.size()))
}

// maxFetchPages bounds the pages fetched from one authority in one round,
// so that a huge backlog cannot hold the loop.
const maxFetchPages = 16

func (g *Gateway) redeemWith(ctx context.Context, i int) {
	tc := &g.cfg.Tickets
	a := tc.Authorities[i]
	ctx, cancel := context.WithTimeout(ctx, max(tc.ReportInterval, 10*time.Second))
	defer cancel()
	if serials := g.spent.toReport(i, ticket.MaxReportSerials); len(serials) > 0 {
		r, err := ticket.SignReport(tc.IdentityKey, serials, g.now())
		if err == nil {
			err = ticket.SendReport(ctx, tc.HTTPClient, a.URL, r)
		}
		if err != nil {
			g.metrics.reports[reportFailed].Inc()
			g.log.Warn("ticket report failed", "authority", a.Name, "serials", len(serials), "err", err)
		} else {
			g.metrics.reports[reportSent].Inc()
			if err := g.spent.reported(i, serials); err != nil {
				g.log.Error("spent set", "err", err)
			}
		}
	}
	cursor := g.spent.cursor(a.URL)
	for range maxFetchPages {
		list, err := ticket.FetchSpent(ctx, tc.HTTPClient, a.URL, cursor)
		if err != nil {
			g.metrics.reports[reportFetchFailed].Inc()
			g.log.Warn("fetching spent tickets failed", "authority", a.Name, "err", err)
			return
		}
		g.metrics.reports[reportFetched].Inc()
		learned := make([]learnedSerial, len(list.Spent))
		for j, s := range list.Spent {
			learned[j] = learnedSerial{serial: s.Serial, expiry: s.Expiry, double: s.Double}
		}
		doubles, holders, err := g.spent.learned(learned, i, tc.Threshold, g.now())
		if err != nil {
			g.log.Error("spent set", "err", err)
			return
		}
		if doubles > 0 {
			g.metrics.doubleSpends.Add(float64(doubles))
			g.log.Warn("tickets spent here were spent at another gateway too", "count", doubles, "authority", a.Name)
		}
		for _, cl := range holders {
			g.debit(cl, tc.Quota)
		}
		if list.Next == cursor {
			return
		}
		cursor = list.Next
		if err := g.spent.setCursor(a.URL, cursor); err != nil {
			g.log.Error("spent set", "err", err)
			return
		}
		if len(list.Spent) == 0 {
			return
		}
	}
}
