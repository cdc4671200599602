package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/gatewire"
	"github.com/nym-go/nym/mixnet/link"
	"github.com/nym-go/nym/mixnet/ticket"
)

// TicketSource pays gateways that require bandwidth tickets. The client
// asks it for a spend when it connects to such a gateway and whenever the
// gateway says its quota is running low.
type TicketSource interface {
	// Spend takes one unspent ticket out for good and shows it to the
	// gateway with this identity at now. ticket.ErrNoTickets (wrapped) says
	// none is left.
	Spend(gateway directory.Key, now time.Time) (ticket.Spend, error)
}

// BookTickets spends mixnet-entry tickets from a ticketbook file
// (ticket.LoadBook). Each spend takes its ticket out of the file before the
// spend leaves, so a crash can lose a ticket but never show one twice.
type BookTickets struct {
	Path string
	mu   sync.Mutex
}

// Spend implements TicketSource.
func (b *BookTickets) Spend(gateway directory.Key, now time.Time) (ticket.Spend, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	book, err := ticket.LoadBook(b.Path)
	if err != nil {
		return ticket.Spend{}, err
	}
	t, priv, err := book.Next(ticket.TypeMixnetEntry, now)
	if err != nil {
		return ticket.Spend{}, err
	}
	if err := book.Save(b.Path); err != nil {
		return ticket.Spend{}, err
	}
	return ticket.NewSpend(t, priv, [32]byte(gateway), now)
}

// ErrNoTicket is returned by Connect, wrapped with the gateway's words, when
// the gateway requires tickets and the client has none to show.
var ErrNoTicket = errors.New("no ticket: the gateway requires bandwidth tickets; run `nymvpn tickets add VOUCHER`")

// TicketStatus is where the client's account at its gateway stands.
type TicketStatus struct {
	// Known: the gateway has said (each gateway does on connect).
	Known bool
	// Unmetered: the gateway requires no tickets.
	Unmetered bool
	// Left is the bytes left at the gateway, both directions together:
	// what the gateway last said, less what the link carried since (a
	// little low, as the link's framing counts too).
	Left uint64
	// Spent counts the tickets shown to gateways since Connect.
	Spent uint64
	// Refusal is the gateway's last word on a refused or missing ticket.
	Refusal string
}

// tickets is the client's side of the gateway's metering.
type tickets struct {
	mu      sync.Mutex
	st      TicketStatus
	changed chan struct{} // closed and replaced whenever st changes
	// paying is set from a spend sent until the gateway's next Quota or
	// refusal, so one request for a ticket gets one ticket.
	paying   bool
	refusals int   // refused spends in a row; bounds the retries
	payErr   error // the last attempt to pay failed (no ticket left)
	// linkBytes is what the link had carried both ways when the gateway
	// last said how much was left.
	linkBytes uint64
	want      chan struct{}
}

// maxTicketRetries bounds the tickets spent in a row on refusals (expired,
// refused by a gateway that changed its mind): past it the client waits
// for the gateway to ask again.
const maxTicketRetries = 3

func newTickets() *tickets {
	return &tickets{changed: make(chan struct{}), want: make(chan struct{}, 1)}
}

func (t *tickets) notifyLocked() {
	close(t.changed)
	t.changed = make(chan struct{})
}

// onQuota handles the gateway's Quota (reader goroutine).
func (c *Client) onQuota(m *gatewire.Quota) {
	t := c.tickets
	t.mu.Lock()
	t.st.Known, t.st.Unmetered, t.st.Left = true, m.Unmetered, m.Left
	t.linkBytes = c.linkBytes()
	t.paying = false
	if m.Left > 0 {
		t.refusals = 0
	}
	t.notifyLocked()
	t.mu.Unlock()
	if m.WantNext {
		select {
		case t.want <- struct{}{}:
		default:
		}
	}
}

// onTicketStatus handles a StatusNoTicket (reader goroutine): a refused
// spend is followed by the next ticket, a few times.
func (c *Client) onTicketStatus(text string) {
	t := c.tickets
	t.mu.Lock()
	t.st.Refusal = text
	retry := t.paying && t.refusals < maxTicketRetries
	t.paying = false
	t.refusals++
	t.notifyLocked()
	t.mu.Unlock()
	c.log.Warn("gateway refused a ticket", "text", text)
	if retry {
		select {
		case t.want <- struct{}{}:
		default:
		}
	}
}

// TicketStatus returns where the client's account at its gateway stands.
func (c *Client) TicketStatus() TicketStatus {
	c.tickets.mu.Lock()
	defer c.tickets.mu.Unlock()
	st := c.tickets.st
	used := c.linkBytes() - c.tickets.linkBytes
	st.Left -= min(used, st.Left)
	return st
}

// linkBytes is what the gateway links carried both ways since Connect.
func (c *Client) linkBytes() uint64 {
	return c.linkStats.BytesSent.Load() + c.linkStats.BytesReceived.Load()
}

// payOnce shows the next ticket on conn, unless one is already on its way.
// It returns ErrNoTicket (wrapped) when the source is empty or missing.
func (c *Client) payOnce(conn *link.Conn) error {
	t := c.tickets
	t.mu.Lock()
	if t.paying {
		t.mu.Unlock()
		return nil
	}
	t.paying = true
	t.mu.Unlock()
	err := c.sendTicket(conn)
	if err != nil {
		t.mu.Lock()
		t.paying = false
		t.mu.Unlock()
	}
	return err
}

func (c *Client) sendTicket(conn *link.Conn) error {
	if c.cfg.Tickets == nil {
		return ErrNoTicket
	}
	sp, err := c.cfg.Tickets.Spend(c.addr.Gateway, time.Now())
	if errors.Is(err, ticket.ErrNoTickets) {
		return fmt.Errorf("%w (%v)", ErrNoTicket, err)
	}
	if err != nil {
		return fmt.Errorf("client: spending a ticket: %w", err)
	}
	b, err := sp.AppendBinary(nil)
	if err != nil {
		return fmt.Errorf("client: encoding a ticket: %w", err)
	}
	if !c.sendFrame(conn, link.Frame{Kind: link.KindClient, Payload: (&gatewire.Ticket{Spend: b}).AppendBinary(nil)}, false) {
		return fmt.Errorf("client: the gateway connection took no ticket: %w", conn.Err())
	}
	c.tickets.mu.Lock()
	c.tickets.st.Spent++
	c.tickets.mu.Unlock()
	c.log.Debug("ticket shown to the gateway")
	return nil
}

// payGateway runs at Connect, with runTickets already running: it waits
// for the gateway's first Quota and, when the gateway wants a ticket before
// it serves us, for runTickets to pay and the gateway to take it. A gateway
// that requires a ticket the client cannot show is an error naming what to
// do.
func (c *Client) payGateway(ctx context.Context, conn *link.Conn) error {
	t := c.tickets
	for {
		t.mu.Lock()
		st, payErr, refusals, changed := t.st, t.payErr, t.refusals, t.changed
		t.mu.Unlock()
		switch {
		case st.Known && (st.Unmetered || st.Left > 0):
			return nil
		case payErr != nil:
			return fmt.Errorf("client: gateway %s: %w", c.addr.Gateway, payErr)
		case refusals > maxTicketRetries:
			return fmt.Errorf("client: gateway %s refused our tickets: %s", c.addr.Gateway, st.Refusal)
		}
		select {
		case <-changed:
		case <-conn.Done():
			if st.Refusal != "" {
				return fmt.Errorf("client: gateway %s closed the connection: %s", c.addr.Gateway, st.Refusal)
			}
			return fmt.Errorf("client: gateway %s closed the connection before it took a ticket: %w", c.addr.Gateway, conn.Err())
		case <-ctx.Done():
			return fmt.Errorf("client: waiting for gateway %s to take a ticket: %w", c.addr.Gateway, ctx.Err())
		}
	}
}

// runTickets spends the next ticket whenever the gateway asks for one, on
// whatever connection is current.
func (c *Client) runTickets(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.tickets.want:
		}
		conn := c.link.current()
		if conn == nil {
			continue // the next connection's greeting asks again
		}
		err := c.payOnce(conn)
		if err != nil {
			c.log.Warn("cannot pay the gateway", "err", err)
		}
		c.tickets.mu.Lock()
		c.tickets.payErr = err
		c.tickets.notifyLocked()
		c.tickets.mu.Unlock()
	}
}
