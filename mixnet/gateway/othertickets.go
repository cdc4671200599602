package gateway

import (
	"errors"
	"fmt"

	"github.com/nym-go/nym/mixnet/ticket"
)

// Errors of SpendTicket, besides ticket's (ticket.ErrExpired,
// ticket.ErrWrongGateway, ...), for errors.Is.
var (
	// ErrTicketsOff: the gateway requires no tickets, so it keeps no
	// spent set to record one in.
	ErrTicketsOff = errors.New("gateway: tickets are not required here")
	// ErrTicketType: the ticket is of another type than the door takes.
	ErrTicketType = errors.New("wrong ticket type")
	// ErrTicketSpent: the serial was spent before, here or elsewhere.
	ErrTicketSpent = errors.New("ticket already spent")
	// ErrTicketsUnavailable: the gateway cannot check tickets now (no
	// issuer keys, or its spent set failed); the client may try again.
	ErrTicketsUnavailable = errors.New("cannot check tickets now; try again")
)

// SpendTicket checks a spend shown at another door of this node (fast
// mode's WireGuard door) for a ticket of typ, and records its serial in
// this gateway's spent set: the same check, the same set and the same
// reports to the authorities as a mixnet client's ticket, so a serial spent
// at either door, or at another gateway, is refused at both. A nil error
// means the ticket is the caller's to honour (typ.Quota() bytes). A double
// spend found later is counted here; the caller's quota is its own to take
// back.
func (g *Gateway) SpendTicket(spend []byte, typ ticket.Type) error {
	if !g.cfg.Tickets.Required {
		return ErrTicketsOff
	}
	outcome, err := g.claimSpend(spend, typ, nil)
	g.metrics.tickets[outcome].Inc()
	switch outcome {
	case ticketAccepted:
		return nil
	case ticketUnavailable:
		g.log.Warn("cannot check tickets", "err", err)
		return fmt.Errorf("%w: %w", ErrTicketsUnavailable, err)
	}
	return err
}
