package main

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A book without WireGuard tickets pays nothing, and says what to do.
func TestFastBookWithoutTicketsSaysWhatToDo(t *testing.T) {
	fb := &fastBook{path: filepath.Join(t.TempDir(), "tickets.book")}
	_, _, err := fb.spends([32]byte{1}, [32]byte{2}, time.Now())
	if !errors.Is(err, errNoFastTickets) || !strings.Contains(err.Error(), "wireguard-entry") || !strings.Contains(err.Error(), "nymvpn tickets add") {
		t.Fatalf("spends from an empty book: %v", err)
	}
}
