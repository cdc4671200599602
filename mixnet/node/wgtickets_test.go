package node_test

import (
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nym-go/nym/internal/poll"
	"github.com/nym-go/nym/internal/testnet"
	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/gatewire"
	"github.com/nym-go/nym/mixnet/ticket"
	"github.com/nym-go/nym/wgreg"
)

// wgTicketNet is ticketNet with a WireGuard door at both entry gateways:
// three authorities (k = 2) issuing the WireGuard tickets too, and two
// entries requiring tickets at both their doors.
func wgTicketNet(t *testing.T) *testnet.Net { return ticketNetWith(t, true) }

// redeemedType redeems a fresh voucher of count tickets of typ into b.
func redeemedType(t *testing.T, n *testnet.Net, typ ticket.Type, count int, b *ticket.Book) {
	t.Helper()
	v, err := ticket.NewVoucher(typ, count)
	if err != nil {
		t.Fatal(err)
	}
	n.AddVouchers(v)
	// On a loaded machine the test network's short epochs can leave the
	// authorities a moment without a fresh consensus: redeeming then fails
	// before any authority saw the voucher, so it may be tried again.
	for i := 0; ; i++ {
		got, err := redeem(n, v, b)
		if err != nil && i < 5 && strings.Contains(err.Error(), "no consensus can be had") {
			t.Logf("redeem %s: %v; again", typ, err)
			continue
		}
		if err != nil || got != count {
			t.Fatalf("redeem %s: %d tickets, %v", typ, got, err)
		}
		return
	}
}

// spendFor takes the next ticket of typ out of b and shows it to gw.
func spendFor(t *testing.T, b *ticket.Book, typ ticket.Type, gw directory.Key) (ticket.Ticket, []byte, []byte) {
	t.Helper()
	tk, priv, err := b.Next(typ, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tk, priv, encodeSpend(t, tk, priv, gw)
}

func encodeSpend(t *testing.T, tk ticket.Ticket, priv []byte, gw directory.Key) []byte {
	t.Helper()
	sp, err := ticket.NewSpend(tk, priv, [32]byte(gw), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b, err := sp.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// registerWG registers a fresh WireGuard key at entry's door, paying with
// spend (nil: none).
func registerWG(t *testing.T, top *directory.Topology, entry directory.Node, spend []byte) error {
	t.Helper()
	var key [32]byte
	rand.Read(key[:])
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, s, err := wgreg.RegisterEntry(ctx, entry, key, wgreg.Options{Rotation: top.Rotation, EntrySpend: spend})
	if err == nil {
		s.Close()
	}
	return err
}

func refusedWG(t *testing.T, err error, want string) {
	t.Helper()
	if !errors.Is(err, wgreg.ErrGateway) || !strings.Contains(err.Error(), want) {
		t.Fatalf("registration: %v; want the door's refusal saying %q", err, want)
	}
}

// Fast mode's entry door takes wireguard-entry tickets bound to its
// gateway through the mixnet gateway's check: without a ticket, with one of
// another type, bound to another gateway or already spent (at this door,
// at the same gateway's mixnet door, or at another gateway's WireGuard
// door, learned through the authorities) a registration is refused with
// words saying so; with a valid one it gets its peer.
func TestWireGuardDoorTakesTickets(t *testing.T) {
	n := wgTicketNet(t)
	nodes, _ := entryNodes(t, n)
	top, err := n.Topology()
	if err != nil {
		t.Fatal(err)
	}
	doors := wgreg.Entries(top)
	var gws [2]directory.Node
	for i, nd := range nodes[:2] {
		for _, d := range doors {
			if d.Identity == directory.Key(nd.Identity()) {
				gws[i] = d
			}
		}
		if gws[i].WGAddr == "" {
			t.Fatalf("entry %d announces no WireGuard door", i)
		}
	}
	book := ticket.NewBook()
	redeemedType(t, n, ticket.TypeWireGuardEntry, 4, book)
	redeemedType(t, n, ticket.TypeWireGuardExit, 1, book)
	redeemedType(t, n, ticket.TypeMixnetEntry, 1, book)

	refusedWG(t, registerWG(t, top, gws[0], nil), "nymvpn tickets add")
	_, _, exitSpend := spendFor(t, book, ticket.TypeWireGuardExit, gws[0].Identity)
	refusedWG(t, registerWG(t, top, gws[0], exitSpend), "wireguard-exit ticket; this door takes wireguard-entry")
	tk, priv, other := spendFor(t, book, ticket.TypeWireGuardEntry, gws[1].Identity)
	refusedWG(t, registerWG(t, top, gws[0], other), "another gateway")

	// None of those spent the ticket: bound to this gateway it buys a peer.
	if err := registerWG(t, top, gws[0], encodeSpend(t, tk, priv, gws[0].Identity)); err != nil {
		t.Fatalf("a valid ticket: %v", err)
	}
	accepted := time.Now()
	refusedWG(t, registerWG(t, top, gws[0], encodeSpend(t, tk, priv, gws[0].Identity)), "already spent at this gateway")

	// The door's serials go into the mixnet gateway's spent set and its
	// reports: another gateway learns them through the authorities and
	// refuses the ticket at its own door; both count the double spend.
	poll.Until(t, time.Minute, "gateway B to learn the serial spent at A's WireGuard door", func() bool {
		return metricValue(t, nodes[1], "nym_gateway_ticket_spent_serials") >= 1
	})
	t.Logf("gateway B knew the serial spent at A's door %v after A took it (report interval %v)", time.Since(accepted).Round(time.Millisecond), reportInterval)
	refusedWG(t, registerWG(t, top, gws[1], encodeSpend(t, tk, priv, gws[1].Identity)), "already spent at another gateway")
	for _, nd := range nodes[:2] {
		poll.Until(t, time.Minute, "both gateways to count the double spend", func() bool {
			return metricValue(t, nd, "nym_gateway_ticket_double_spends_total") == 1
		})
	}

	// A mixnet-entry ticket spent at the mixnet door does not pay the
	// WireGuard door, and a valid one at B's door works.
	mtk, mpriv, err := book.Next(ticket.TypeMixnetEntry, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	rc := dialRaw(t, gws[1])
	if q, ok := rc.show(mtk, mpriv, [32]byte(gws[1].Identity), time.Now()).(*gatewire.Quota); !ok || q.Left == 0 {
		t.Fatalf("the mixnet door did not take a mixnet-entry ticket: %#v", q)
	}
	refusedWG(t, registerWG(t, top, gws[1], encodeSpend(t, mtk, mpriv, gws[1].Identity)), "mixnet-entry ticket; this door takes wireguard-entry")
	_, _, good := spendFor(t, book, ticket.TypeWireGuardEntry, gws[1].Identity)
	if err := registerWG(t, top, gws[1], good); err != nil {
		t.Fatalf("a valid ticket at B: %v", err)
	}
}
