package main

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/ticket"
)

// fastBook pays fast mode's registrations from the daemon's ticketbook: a
// wireguard-entry ticket shown to the entry and a wireguard-exit ticket
// shown to the exit, each bound to that gateway's identity.
type fastBook struct {
	path string
	mu   sync.Mutex // one taker of the file at a time
}

// errNoFastTickets says the book lacks a WireGuard ticket type; the
// registration goes without, and a gateway that requires tickets refuses.
var errNoFastTickets = errors.New("no WireGuard tickets")

// spends takes one ticket of each WireGuard type out of the book for good
// (saved before any spend leaves, so a crash can lose a ticket but never
// show one twice) and returns the spends for entry and exit. When the book
// lacks either type it takes neither and returns errNoFastTickets wrapped
// with what to do: the caller registers without, for networks whose
// gateways take no tickets.
func (fb *fastBook) spends(entry, exit directory.Key, now time.Time) (entrySpend, exitSpend []byte, err error) {
	if fb == nil || fb.path == "" {
		return nil, nil, errNoFastTickets
	}
	fb.mu.Lock()
	defer fb.mu.Unlock()
	book, err := ticket.LoadBook(fb.path)
	if err != nil {
		return nil, nil, err
	}
	for _, typ := range []ticket.Type{ticket.TypeWireGuardEntry, ticket.TypeWireGuardExit} {
		if book.Remaining(typ, now) == 0 {
			return nil, nil, fmt.Errorf("%w: the ticketbook has no %s ticket; run `nymvpn tickets add VOUCHER` with a voucher of that type", errNoFastTickets, typ)
		}
	}
	var out [2][]byte
	for i, g := range []struct {
		typ ticket.Type
		gw  directory.Key
	}{{ticket.TypeWireGuardEntry, entry}, {ticket.TypeWireGuardExit, exit}} {
		if out[i], err = spendFrom(book, g.typ, g.gw, now); err != nil {
			return nil, nil, err
		}
	}
	if err := book.Save(fb.path); err != nil {
		return nil, nil, err
	}
	return out[0], out[1], nil
}

// spend takes one ticket of typ out of the book for good, as spends does,
// and returns its spend for gateway gw: a top-up of one hop's allowance.
func (fb *fastBook) spend(typ ticket.Type, gw directory.Key, now time.Time) ([]byte, error) {
	if fb == nil || fb.path == "" {
		return nil, fmt.Errorf("%w: no ticketbook", errNoFastTickets)
	}
	fb.mu.Lock()
	defer fb.mu.Unlock()
	book, err := ticket.LoadBook(fb.path)
	if err != nil {
		return nil, err
	}
	if book.Remaining(typ, now) == 0 {
		return nil, fmt.Errorf("%w: the ticketbook has no %s ticket left; run `nymvpn tickets add VOUCHER` with a voucher of that type", errNoFastTickets, typ)
	}
	sp, err := spendFrom(book, typ, gw, now)
	if err != nil {
		return nil, err
	}
	if err := book.Save(fb.path); err != nil {
		return nil, err
	}
	return sp, nil
}

// spendFrom takes the next ticket of typ from book (not saved) and makes
// its spend for gw.
func spendFrom(book *ticket.Book, typ ticket.Type, gw directory.Key, now time.Time) ([]byte, error) {
	t, priv, err := book.Next(typ, now)
	if err != nil {
		return nil, err
	}
	sp, err := ticket.NewSpend(t, priv, [32]byte(gw), now)
	if err != nil {
		return nil, fmt.Errorf("spending a %s ticket: %w", typ, err)
	}
	b, err := sp.AppendBinary(nil)
	if err != nil {
		return nil, fmt.Errorf("encoding a %s spend: %w", typ, err)
	}
	return b, nil
}
