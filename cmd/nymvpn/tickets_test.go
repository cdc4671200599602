package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/nym-go/nym/mixnet/client"
	"github.com/nym-go/nym/mixnet/directory"
)

// A daemon's ticketbook lives beside its state, one per network: the same
// authorities in any order give the same book, others another.
func TestTicketBookPath(t *testing.T) {
	a, b, c := directory.Key{1}, directory.Key{2}, directory.Key{3}
	net := func(keys ...directory.Key) *directory.Network {
		n := &directory.Network{Threshold: 2}
		for _, k := range keys {
			n.Authorities = append(n.Authorities, directory.Authority{Name: k.String()[:4], Key: k, URL: "http://192.0.2.1:8000"})
		}
		return n
	}
	state := filepath.Join("/var/lib/nymvpn", "platform.state")
	p1 := ticketBookPath(state, net(a, b, c))
	if p2 := ticketBookPath(state, net(c, a, b)); p2 != p1 {
		t.Fatalf("same authorities, other order: %s and %s", p1, p2)
	}
	if p3 := ticketBookPath(state, net(a, b)); p3 == p1 {
		t.Fatalf("another network, same book %s", p1)
	}
	if filepath.Dir(p1) != "/var/lib/nymvpn" || !strings.HasPrefix(filepath.Base(p1), "tickets-") || !strings.HasSuffix(p1, ".book") {
		t.Fatalf("book %s not beside the state", p1)
	}
	other := ticketBookPath(defaultStatePath("/run/other.sock"), net(a, b, c))
	if other == p1 {
		t.Fatal("two daemons share a book")
	}
}

// status shows the bytes left at the entry gateway, or that it is
// unmetered.
func TestStatusShowsTickets(t *testing.T) {
	for _, c := range []struct {
		ts   client.TicketStatus
		want string
	}{
		{client.TicketStatus{Known: true, Left: 123456, Spent: 2}, "123456 bytes left at the entry gateway"},
		{client.TicketStatus{Known: true, Unmetered: true}, "requires none"},
	} {
		var out bytes.Buffer
		cmd := &cobra.Command{}
		cmd.SetOut(&out)
		printStatus(cmd, &status{State: "connected", Tickets: &c.ts})
		if !strings.Contains(out.String(), c.want) {
			t.Errorf("status printed %q, want %q", out.String(), c.want)
		}
	}
}
