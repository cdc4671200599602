package main

import (
	"path/filepath"
	"strings"
	"testing"

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
