package node

import (
	"context"

	"github.com/nym-go/nym/mixnet/gateway"
	"github.com/nym-go/nym/mixnet/ticket"
	"github.com/nym-go/nym/wgreg"
)

// wgTickets is the WireGuard door's ticket check: the mixnet gateway's, so
// both doors share one spent set and one report loop (a serial spent at
// either door, or at another gateway, is refused at both), with the ticket
// type of the door's role.
type wgTickets struct{ g *gateway.Gateway }

// VerifySpend implements wggate.TicketVerifier.
func (v wgTickets) VerifySpend(_ context.Context, role wgreg.Role, spend []byte) error {
	return v.g.SpendTicket(spend, wireGuardTicketType(role))
}

// wireGuardTicketType is the ticket a door of role takes.
func wireGuardTicketType(role wgreg.Role) ticket.Type {
	if role == wgreg.RoleEntry {
		return ticket.TypeWireGuardEntry
	}
	return ticket.TypeWireGuardExit
}
