package vpn

import (
	"testing"
	"time"
)

// The exit reports its backlog in regular replies' bundles; when our SURBs
// make extended replies, each carries four of them, and the supply asked
// for follows what the backlog really needs.
func TestSURBBudgetExtended(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct{ perSURB, backlog, want, urgent int }{
		{1, 10, 10 + 2*10, 5 + 2*10},
		{4, 10, 10 + 2*3, 5 + 2*3},
		{4, 0, 10, 5},
		{4, 1000, 400, 400},
	} {
		b := newSURBBudget(10, 400, time.Minute, now).carrying(tc.perSURB)
		b.replied(tc.backlog, now)
		if got, urgent := b.need(now); got != tc.want || urgent != tc.urgent {
			t.Errorf("%d per SURB, backlog %d: deficit %d and urgent %d, want %d and %d", tc.perSURB, tc.backlog, got, urgent, tc.want, tc.urgent)
		}
	}
}

// The floor: replies spend the exit's stock, and until it falls below half
// of it the top-up is not urgent; a backlog makes it urgent at once.
func TestSURBBudgetFloor(t *testing.T) {
	now := time.Now()
	b := newSURBBudget(20, 400, time.Minute, now)
	b.gave(20)
	for i := range 10 {
		if _, urgent := b.need(now); urgent > 0 {
			t.Fatalf("after %d replies of a stock of 20: urgent %d", i, urgent)
		}
		b.replied(0, now)
	}
	if deficit, urgent := b.need(now); deficit != 10 || urgent != 0 {
		t.Fatalf("at the floor: deficit %d and urgent %d, want 10 and 0", deficit, urgent)
	}
	b.replied(0, now)
	if _, urgent := b.need(now); urgent != 1 {
		t.Fatalf("below the floor: urgent %d, want 1", urgent)
	}
	b.gave(11)
	b.replied(3, now)
	if _, urgent := b.need(now); urgent != 10+6-19 {
		t.Fatalf("with a backlog of 3: urgent %d, want %d", urgent, 10+6-19)
	}
}
