package gateway

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/gatewire"
	"github.com/nym-go/nym/mixnet/ticket"
)

// Ticket defaults.
const (
	// DefaultTicketGrace is how long a connection may go without a valid
	// ticket (from its handshake, or from when its quota ran out) before it
	// is closed. A client shows its ticket in the first round trip after
	// the handshake; five seconds covers a slow link and a loaded machine
	// while a connection that does not pay holds a slot for no longer.
	DefaultTicketGrace = 5 * time.Second
	// DefaultTicketReportInterval is how often the gateway reports the
	// serials spent here to every authority and fetches back the serials
	// spent anywhere. A new serial is also reported at once, so another
	// gateway refuses a second spend within its next fetch, at most one
	// interval later.
	DefaultTicketReportInterval = 30 * time.Second
	// MaxTicketReportInterval bounds the interval: the double-spend window
	// is about two of them.
	MaxTicketReportInterval = time.Minute
	// ticketHold is how long the gateway remembers which client paid with
	// a serial (in memory only), so that a double spend found later takes
	// back that client's quota: several report rounds of every gateway.
	ticketHoldIntervals = 10
)

// NoTicketText is what a client that has not shown a valid ticket is told
// before its connection closes: it names what the user can do.
const NoTicketText = "no ticket: this gateway requires bandwidth tickets; run `nymvpn tickets add VOUCHER`"

// TicketConfig is the gateway's side of anonymous bandwidth tickets.
type TicketConfig struct {
	// Required turns tickets on: a client may send into the mixnet, have
	// messages delivered or stored, and keep its connection only while it
	// has bytes of a valid ticket left. Off, the gateway serves everybody
	// and tells each client it is unmetered.
	Required bool
	// Identity is this gateway's identity key: spends shown here must be
	// bound to it.
	Identity [32]byte
	// Issuers returns the authorities' ticket keys from the current
	// verified consensus; an error refuses tickets for now ("try again").
	Issuers func() (ticket.Issuers, error)
	// Type is the ticket type the gateway takes. Default
	// ticket.TypeMixnetEntry.
	Type ticket.Type
	// Quota overrides the bytes one ticket buys (Type.Quota()). For test
	// networks only, where a transfer must cross several tickets quickly.
	Quota int64
	// Grace is how long a connection may stay without a valid ticket.
	// Default DefaultTicketGrace.
	Grace time.Duration
	// Exempt, if set, names client identities that pay nothing: the
	// node's own services that reach the mixnet through this gateway as
	// clients (an exit's IP packet router).
	Exempt func(identity [32]byte) bool

	// Authorities are where spent serials are reported and fetched back
	// (redemption). Empty: no reports (a test gateway alone).
	Authorities []directory.Authority
	// Threshold is how many authorities must flag a serial double before
	// the gateway counts it and takes the rest of that ticket back: the
	// network's k, so that fewer than k lying authorities cannot have
	// honest clients' quota taken. Default a majority of Authorities.
	Threshold int
	// IdentityKey signs the reports; its public half is Identity.
	IdentityKey ed25519.PrivateKey
	// HTTPClient talks to the authorities; nil uses one with a 10 s
	// timeout.
	HTTPClient *http.Client
	// ReportInterval is how often serials are reported and fetched.
	// Default DefaultTicketReportInterval, at most MaxTicketReportInterval.
	ReportInterval time.Duration
}

func (c TicketConfig) withDefaults() (TicketConfig, error) {
	if !c.Required {
		return c, nil
	}
	if c.Identity == ([32]byte{}) {
		return c, errors.New("gateway: tickets required but no gateway identity")
	}
	if c.Issuers == nil {
		return c, errors.New("gateway: tickets required but no Issuers")
	}
	if c.Type == 0 {
		c.Type = ticket.TypeMixnetEntry
	}
	if c.Quota < 0 {
		return c, fmt.Errorf("gateway: negative ticket quota %d", c.Quota)
	}
	if c.Quota == 0 {
		c.Quota = int64(c.Type.Quota())
	}
	if c.Quota <= 0 {
		return c, fmt.Errorf("gateway: ticket type %d buys no bytes", c.Type)
	}
	if c.Grace < 0 || c.ReportInterval < 0 {
		return c, errors.New("gateway: negative ticket grace or report interval")
	}
	if c.Grace == 0 {
		c.Grace = DefaultTicketGrace
	}
	if c.ReportInterval == 0 {
		c.ReportInterval = DefaultTicketReportInterval
	}
	if c.ReportInterval > MaxTicketReportInterval {
		return c, fmt.Errorf("gateway: ticket report interval %v over %v: the double-spend window grows with it", c.ReportInterval, MaxTicketReportInterval)
	}
	if len(c.Authorities) > 64 {
		return c, fmt.Errorf("gateway: %d authorities; at most 64 are tracked", len(c.Authorities))
	}
	if c.Threshold <= 0 {
		c.Threshold = len(c.Authorities)/2 + 1
	}
	if len(c.Authorities) > 0 && len(c.IdentityKey) != ed25519.PrivateKeySize {
		return c, errors.New("gateway: ticket reports need the identity key")
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	return c, nil
}

// allAuthorities is the pending mask of a serial no authority has taken.
func (g *Gateway) allAuthorities() uint64 {
	return uint64(1)<<len(g.cfg.Tickets.Authorities) - 1
}

// ticketOutcome labels nym_gateway_tickets_total.
type ticketOutcome int

const (
	ticketAccepted       ticketOutcome = iota
	ticketMalformed                    // does not decode
	ticketInvalid                      // signatures, type, expiry, binding or time wrong
	ticketSpentHere                    // shown here before
	ticketSpentElsewhere               // spent at another gateway
	ticketUnavailable                  // no issuer keys or the spent set failed
	numTicketOutcomes
)

var ticketOutcomeNames = [numTicketOutcomes]string{
	ticketAccepted:       "accepted",
	ticketMalformed:      "malformed",
	ticketInvalid:        "invalid",
	ticketSpentHere:      "spent_here",
	ticketSpentElsewhere: "spent_elsewhere",
	ticketUnavailable:    "unavailable",
}

// handleTicket checks a spend shown by s's client and, if it is good and
// unspent, records its serial durably and credits the client. A refused
// ticket counts as a malformed message, so one connection cannot make the
// gateway verify signatures without end.
func (g *Gateway) handleTicket(s *session, m *gatewire.Ticket) {
	cl := s.client
	if !cl.meter.metered {
		g.sendStatus(cl, s.c, gatewire.StatusOK, "this gateway requires no tickets of you; keep yours")
		return
	}
	outcome, err := g.checkTicket(s, m.Spend)
	g.metrics.tickets[outcome].Inc()
	switch outcome {
	case ticketAccepted:
		return
	case ticketUnavailable:
		g.log.Warn("cannot check tickets", "err", err)
		g.sendStatus(cl, s.c, gatewire.StatusUnavailable, "cannot check tickets now; try again: "+err.Error())
		return
	}
	g.log.Debug("ticket refused", "client", shortID(cl.addr), "reason", ticketOutcomeNames[outcome], "err", err)
	s.bad++
	if s.bad > g.cfg.MaxBadMessages {
		g.kick(s)
		return
	}
	g.sendStatus(cl, s.c, gatewire.StatusNoTicket, "ticket refused: "+err.Error())
}

var (
	errSpentHere      = fmt.Errorf("%w at this gateway", ErrTicketSpent)
	errSpentElsewhere = fmt.Errorf("%w at another gateway", ErrTicketSpent)
)

func (g *Gateway) checkTicket(s *session, b []byte) (ticketOutcome, error) {
	outcome, err := g.claimSpend(b, g.cfg.Tickets.Type, s.client)
	if outcome == ticketAccepted {
		g.pay(s)
	}
	return outcome, err
}

// claimSpend checks a spend of a ticket of typ shown to this gateway and,
// if it is good and unspent, records its serial durably (reported with the
// others). holder, if any, is the client whose quota a double spend found
// later takes back.
func (g *Gateway) claimSpend(b []byte, typ ticket.Type, holder *client) (ticketOutcome, error) {
	tc := &g.cfg.Tickets
	var sp ticket.Spend
	if err := sp.UnmarshalBinary(b); err != nil {
		return ticketMalformed, err
	}
	is, err := tc.Issuers()
	if err != nil {
		return ticketUnavailable, err
	}
	now := g.now()
	if err := is.Verify(&sp, tc.Identity, now); err != nil {
		return ticketInvalid, err
	}
	if sp.Ticket.Type != typ {
		return ticketInvalid, fmt.Errorf("%w: a %s ticket; this door takes %s tickets", ErrTicketType, sp.Ticket.Type, typ)
	}
	hold := now.Add(ticketHoldIntervals * tc.ReportInterval).UnixNano()
	res, newDouble, err := g.spent.claim(sp.Ticket.Serial(), sp.Ticket.Expiry, holder, hold, g.allAuthorities())
	if err != nil {
		return ticketUnavailable, err
	}
	switch res {
	case claimSpentHere:
		return ticketSpentHere, errSpentHere
	case claimElsewhere:
		if newDouble {
			g.metrics.doubleSpends.Inc()
		}
		g.kickReports()
		return ticketSpentElsewhere, errSpentElsewhere
	}
	g.kickReports()
	return ticketAccepted, nil
}

// pay credits s's client with a ticket's quota and, as a client that
// pays has shown more than life, records it at once.
func (g *Gateway) pay(s *session) {
	cl := s.client
	g.credit(cl, s.c, g.cfg.Tickets.Quota)
	if !s.toRecord.Load() {
		return
	}
	g.mu.Lock()
	cl.mu.Lock()
	if s.toRecord.Swap(false) && cl.sess == s {
		g.recordLocked(cl, false)
		g.proveLocked(cl)
	}
	cl.mu.Unlock()
	g.mu.Unlock()
}

// kick closes s at once after telling it why: too many malformed messages.
func (g *Gateway) kick(s *session) {
	s.closing.Store(true)
	g.metrics.clientsKicked.Inc()
	g.log.Debug("client disconnected: malformed messages", "client", shortID(s.client.addr), "count", s.bad)
	g.sendStatus(s.client, s.c, gatewire.StatusBadMessage, errTooManyBad.Error())
	g.closeLater(s.c, closeGrace)
}

// closeUnpaid closes every connection whose client has been without bytes
// for the grace period, telling it what to do.
func (g *Gateway) closeUnpaid() {
	deadline := g.now().Add(-g.cfg.Tickets.Grace).UnixNano()
	g.sessions.Range(func(_, v any) bool {
		s := v.(*session)
		since := s.client.meter.unpaidSince.Load()
		if since == 0 || since > deadline || s.closing.Load() {
			return true
		}
		if s.client.meter.left.Load() > 0 {
			return true
		}
		s.closing.Store(true)
		g.metrics.clientsUnpaid.Inc()
		g.log.Debug("client disconnected: no ticket", "client", shortID(s.client.addr))
		g.sendStatus(s.client, s.c, gatewire.StatusNoTicket, NoTicketText)
		g.closeLater(s.c, closeGrace)
		return true
	})
}

// closeSpent closes the spent set, if any.
func (g *Gateway) closeSpent() error {
	if g.spent == nil {
		return nil
	}
	if err := g.spent.close(); err != nil {
		return fmt.Errorf("gateway: close spent set: %w", err)
	}
	return nil
}
