package ticket

import (
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nym-go/nym/internal/keyfile"
)

func TestBookSaveLoadAndSpend(t *testing.T) {
	tn := newTestNet(t)
	path := filepath.Join(t.TempDir(), "sub", "tickets.book")
	b, err := LoadBook(path)
	if err != nil {
		t.Fatalf("missing book: %v", err)
	}
	if b.Remaining(TypeMixnetEntry, tn.now) != 0 {
		t.Fatal("new book is not empty")
	}
	var seeds [][32]byte
	var tickets []Ticket
	for range 3 {
		tk, priv := tn.issue(t, TypeMixnetEntry, 0, 1)
		seeds = append(seeds, [32]byte(priv.Seed()))
		tickets = append(tickets, tk)
	}
	tickets[1].Expiry-- // expires first, so is spent first (the signatures no longer matter here)
	if n, err := b.add(seeds, tickets); n != 3 || err != nil {
		t.Fatalf("add: %d, %v", n, err)
	}
	if n, _ := b.add(seeds, tickets); n != 0 {
		t.Fatalf("the same tickets were added again: %d", n)
	}
	b.SetLeft(TypeMixnetEntry, 12345)
	if err := b.Save(path); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != keyfile.Mode {
		t.Fatalf("book file mode: %v, %v", fi.Mode(), err)
	}
	back, err := LoadBook(path)
	if err != nil {
		t.Fatal(err)
	}
	if back.secret != b.secret || back.Left(TypeMixnetEntry) != 12345 || back.Remaining(TypeMixnetEntry, tn.now) != 3 {
		t.Fatal("book did not survive a round trip")
	}
	if l := back.List(tn.now); len(l) != 2 || l[0].Count+l[1].Count != 3 {
		t.Fatalf("List = %+v", l)
	}
	tk, priv, err := back.Next(TypeMixnetEntry, tn.now)
	if err != nil {
		t.Fatal(err)
	}
	if tk.Key != tickets[1].Key || [32]byte(priv.Public().(ed25519.PublicKey)) != tk.Key {
		t.Fatal("Next did not give the ticket that expires first, with its key")
	}
	if _, _, err := back.Next(TypeWireGuardExit, tn.now); !errors.Is(err, ErrNoTickets) {
		t.Fatalf("Next of a type the book lacks: %v", err)
	}
	// Expired tickets are not handed out.
	if _, _, err := back.Next(TypeMixnetEntry, time.Unix(tn.expiry, 0)); !errors.Is(err, ErrNoTickets) {
		t.Fatalf("Next after expiry: %v", err)
	}

	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadBook(path); !errors.Is(err, keyfile.ErrExposed) {
		t.Fatalf("a book others may read was loaded: %v", err)
	}
}

func TestBookRefusesGarbage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tickets.book")
	if err := os.WriteFile(path, []byte("not a book"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadBook(path); !errors.Is(err, ErrMalformed) {
		t.Fatalf("garbage loaded as a book: %v", err)
	}
}
