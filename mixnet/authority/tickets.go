package authority

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/nym-go/nym/internal/promreg"
	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/ticket"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// Tickets configures the authority's part in bandwidth tickets (package
// mixnet/ticket): issuing them against vouchers and collecting the
// gateways' reports of spent serials.
type Tickets struct {
	// Disabled turns tickets off: no issuer keys are made or published and
	// the ticket endpoints are not served.
	Disabled bool
	// MaxConcurrentIssues bounds the issuance requests signed at once (a
	// 50-ticket request costs about 170 ms of CPU). Default 2.
	MaxConcurrentIssues int
	// MaintenanceInterval is how often issuer keys are made ahead and
	// expired serials pruned. Default 10 min.
	MaintenanceInterval time.Duration
	// ReportRate bounds the serials one gateway may report per second on
	// average, so a node of the consensus cannot fill the authority's disk
	// with made-up serials; ReportBurst is how many it may report at once.
	// A gateway spending 200 MB tickets at 10 Gbit/s reports about 6 a
	// second. Defaults 100 and ticket.MaxReportSerials.
	ReportRate  float64
	ReportBurst int
}

func (c Tickets) withDefaults() (Tickets, error) {
	if c.MaxConcurrentIssues == 0 {
		c.MaxConcurrentIssues = 2
	}
	if c.MaintenanceInterval == 0 {
		c.MaintenanceInterval = 10 * time.Minute
	}
	if c.ReportRate == 0 {
		c.ReportRate = 100
	}
	if c.ReportBurst == 0 {
		c.ReportBurst = ticket.MaxReportSerials
	}
	if c.MaxConcurrentIssues < 0 || c.MaintenanceInterval < 0 || c.ReportRate < 0 || c.ReportBurst < 0 {
		return c, fmt.Errorf("tickets: negative setting in %+v", c)
	}
	return c, nil
}

// maxVoucherAnswers bounds how often one voucher's request is answered (the
// first time and its retries): each answer costs a signature per ticket.
const maxVoucherAnswers = 10

// issueSkew is how far from the authority's clock a client's choice of
// expiry may come from: near midnight the client and the authority may
// disagree on the day.
const issueSkew = 5 * time.Minute

// ticketState is the authority's ticket machinery.
type ticketState struct {
	keys     *issuerKeys
	vouchers *voucherSet
	sem      chan struct{}

	issued, refused, reported, doubles prometheus.Counter
	unregister                         func()

	mu sync.Mutex
	// reporters holds a token bucket of serials per gateway; only gateways
	// of the consensus get one, so it stays as small as the network.
	reporters map[directory.Key]*rate.Limiter
}

// allowReport takes n serials from gw's bucket at now.
func (ts *ticketState) allowReport(cfg Tickets, gw directory.Key, n int, now time.Time) bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	l, ok := ts.reporters[gw]
	if !ok {
		if len(ts.reporters) >= directory.MaxTopologyNodes {
			clear(ts.reporters) // gateways that left; a fresh bucket is full anyway
		}
		l = rate.NewLimiter(rate.Limit(cfg.ReportRate), cfg.ReportBurst)
		ts.reporters[gw] = l
	}
	return l.AllowN(now, n)
}

// initTickets loads the issuer keys and serves the ticket endpoints. Keys
// are made by `nym-api init`, or by the maintenance loop at once.
func (s *Server) initTickets() error {
	if err := s.store.initTicketBuckets(); err != nil {
		return fmt.Errorf("tickets: %w", err)
	}
	keys, err := openIssuerKeys(s.cfg.DataDir)
	if err != nil {
		return err
	}
	ts := &ticketState{keys: keys, vouchers: &voucherSet{dataDir: s.cfg.DataDir}, sem: make(chan struct{}, s.cfg.Tickets.MaxConcurrentIssues),
		reporters: make(map[directory.Key]*rate.Limiter),
		issued: prometheus.NewCounter(prometheus.CounterOpts{Name: "nym_api_tickets_issued_total",
			Help: "Tickets signed blind (first answers to vouchers; retries not counted)."}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{Name: "nym_api_ticket_requests_refused_total",
			Help: "Issuance requests refused: unknown or used vouchers, malformed requests, too many retries."}),
		reported: prometheus.NewCounter(prometheus.CounterOpts{Name: "nym_api_ticket_serials_reported_total",
			Help: "Spent-ticket serials gateways reported for the first time."}),
		doubles: prometheus.NewCounter(prometheus.CounterOpts{Name: "nym_api_ticket_double_spends_total",
			Help: "Serials reported by a second gateway: double spends."}),
	}
	if ts.unregister, err = promreg.Register(s.cfg.Registerer, ts.issued, ts.refused, ts.reported, ts.doubles); err != nil {
		return fmt.Errorf("register ticket metrics: %w", err)
	}
	s.tickets = ts
	s.mux.HandleFunc("POST "+directory.PathTicketIssue, s.handleTicketIssue)
	s.mux.HandleFunc("POST "+directory.PathTicketReport, s.handleTicketReport)
	s.mux.HandleFunc("GET "+directory.PathTicketSpent, s.handleTicketSpent)
	return nil
}

// issuerKeysAt are this authority's ticket keys to publish for a document
// starting at at: nil with tickets off.
func (s *Server) issuerKeysAt(at time.Time) []directory.IssuerKey {
	if s.tickets == nil {
		return nil
	}
	return s.tickets.keys.public(s.pub, at)
}

// ticketLoop makes issuer keys ahead and prunes expired serials every
// MaintenanceInterval until ctx is done.
func (s *Server) ticketLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.Tickets.MaintenanceInterval)
	defer t.Stop()
	for {
		now := s.cfg.Now()
		if _, err := s.tickets.keys.ensure(now, s.log); err != nil {
			s.log.Error("making ticket issuer keys", "err", err)
		}
		if n, err := s.store.pruneSpent(now); err != nil {
			s.log.Error("pruning spent tickets", "err", err)
		} else if n > 0 {
			s.log.Info("forgot expired spent tickets", "serials", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// handleTicketIssue serves POST /api/v1/tickets/issue: a voucher and one
// blinded message per ticket in, one blind signature per message out.
func (s *Server) handleTicketIssue(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, ticket.MaxIssueRequestSize+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("read request: %v", err))
		return
	}
	var req ticket.IssueRequest
	if err := req.UnmarshalBinary(body); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	sigs, status, err := s.issue(&req, sha256.Sum256(body), s.cfg.Now())
	if err != nil {
		s.tickets.refused.Inc()
		writeError(w, status, err)
		return
	}
	resp := ticket.IssueResponse{Signatures: sigs}
	out, err := resp.AppendBinary(nil)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	w.Header().Set("Content-Type", ticket.ContentType)
	w.Write(out)
}

// issue judges an issuance request whose encoding hashes to reqHash and
// signs it; on refusal it returns the HTTP status to answer with.
func (s *Server) issue(req *ticket.IssueRequest, reqHash [32]byte, now time.Time) ([][]byte, int, error) {
	v, err := ticket.ParseVoucher(req.Voucher)
	if err != nil {
		return nil, http.StatusBadRequest, err
	}
	ok, err := s.tickets.vouchers.has(v)
	if err != nil {
		s.log.Error("reading the vouchers file", "err", err)
		return nil, http.StatusInternalServerError, errors.New("vouchers unavailable")
	}
	if !ok {
		return nil, http.StatusForbidden, errors.New("unknown voucher: it is not installed at this authority")
	}
	if req.Type != v.Type || len(req.Blinded) != v.Tickets {
		return nil, http.StatusBadRequest, fmt.Errorf("the voucher buys %d %s tickets; the request asks for %d %s", v.Tickets, v.Type, len(req.Blinded), req.Type)
	}
	priv, ok := s.tickets.keys.key(req.Type, req.Expiry)
	if !ok {
		return nil, http.StatusBadRequest, fmt.Errorf("no %s issuer key for expiry %d", req.Type, req.Expiry)
	}
	// Judge every message before the voucher is recorded: one that cannot
	// be signed must not use it up.
	for i, b := range req.Blinded {
		if len(b) != priv.Size() || new(big.Int).SetBytes(b).Cmp(priv.N) >= 0 {
			return nil, http.StatusBadRequest, fmt.Errorf("blinded message %d is not a number below the %d-byte modulus", i, priv.Size())
		}
	}
	fresh := func() error {
		for _, at := range []time.Time{now, now.Add(-issueSkew), now.Add(issueSkew)} {
			if req.Expiry == ticket.ExpiryFor(at) {
				return nil
			}
		}
		return fmt.Errorf("expiry %d is not today's (%d)", req.Expiry, ticket.ExpiryFor(now))
	}
	first, err := s.store.useVoucher(voucherID(v), reqHash, v.Tickets, maxVoucherAnswers, now, fresh)
	switch {
	case errors.Is(err, errVoucherUsed):
		return nil, http.StatusConflict, err
	case errors.Is(err, errVoucherAnswered):
		return nil, http.StatusTooManyRequests, err
	case err != nil && first:
		s.log.Error("recording a voucher", "err", err)
		return nil, http.StatusInternalServerError, errors.New("cannot record the voucher")
	case err != nil:
		return nil, http.StatusBadRequest, err
	}
	s.tickets.sem <- struct{}{}
	defer func() { <-s.tickets.sem }()
	sigs := make([][]byte, len(req.Blinded))
	for i, b := range req.Blinded {
		if sigs[i], err = ticket.BlindSign(priv, b); err != nil {
			return nil, http.StatusBadRequest, fmt.Errorf("message %d: %w", i, err)
		}
	}
	if first {
		s.tickets.issued.Add(float64(v.Tickets))
		s.log.Info("issued tickets", "type", v.Type, "tickets", v.Tickets)
	}
	return sigs, http.StatusOK, nil
}

// handleTicketReport serves POST /api/v1/tickets/report: a gateway's signed
// list of the serials it accepted.
func (s *Server) handleTicketReport(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, ticket.MaxReportSize+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("read report: %v", err))
		return
	}
	var rep ticket.Report
	if err := rep.UnmarshalBinary(body); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	now := s.cfg.Now()
	if err := rep.Check(now); err != nil {
		writeError(w, http.StatusForbidden, err)
		return
	}
	gw := directory.Key(rep.Gateway)
	if !s.isGateway(gw) {
		writeError(w, http.StatusForbidden, fmt.Errorf("%w: %s is not a gateway of the current consensus", ticket.ErrReport, gw))
		return
	}
	if !s.tickets.allowReport(s.cfg.Tickets, gw, len(rep.Serials), now) {
		writeError(w, http.StatusTooManyRequests, fmt.Errorf("%s reports more than %g serials a second: keep them and report again later", gw, s.cfg.Tickets.ReportRate))
		return
	}
	fresh, doubles, err := s.store.reportSpent(gw, rep.Serials, now)
	if err != nil {
		s.log.Error("recording spent tickets", "err", err)
		writeError(w, http.StatusInternalServerError, errors.New("cannot record the report"))
		return
	}
	s.tickets.reported.Add(float64(fresh))
	s.tickets.doubles.Add(float64(doubles))
	if doubles > 0 {
		s.log.Warn("double-spent tickets reported", "gateway", gw, "serials", doubles)
	}
	s.log.Debug("ticket report", "gateway", gw, "serials", len(rep.Serials), "new", fresh, "double", doubles)
	w.WriteHeader(http.StatusNoContent)
}

// isGateway reports whether id is a node of the current topology (the
// consensus, for an authority of a network) that can be a gateway.
func (s *Server) isGateway(id directory.Key) bool {
	var top *directory.Topology
	if s.cons != nil {
		s.cons.mu.Lock()
		if s.cons.accepted != nil {
			top = s.cons.accepted.top
		}
		s.cons.mu.Unlock()
	} else {
		top = s.Topology()
	}
	if top == nil {
		return false
	}
	n, ok := top.NodeByIdentity(id)
	return ok && n.Capabilities.Gateway()
}

// handleTicketSpent serves GET /api/v1/tickets/spent?since=N.
func (s *Server) handleTicketSpent(w http.ResponseWriter, r *http.Request) {
	since, err := strconv.ParseUint(r.URL.Query().Get("since"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("want ?since=N: %v", err))
		return
	}
	l, err := s.store.spentSince(since, ticket.MaxSpentPage)
	if err != nil {
		s.log.Error("listing spent tickets", "err", err)
		writeError(w, http.StatusInternalServerError, errors.New("cannot list spent tickets"))
		return
	}
	out, err := l.AppendBinary(nil)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	w.Header().Set("Content-Type", ticket.ContentType)
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(out)
}
