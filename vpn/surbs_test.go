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
	for _, tc := range []struct{ perSURB, backlog, want int }{
		{1, 10, 10 + 2*10},
		{4, 10, 10 + 2*3},
		{4, 0, 10},
		{4, 1000, 400},
	} {
		b := newSURBBudget(10, 400, time.Minute, now).carrying(tc.perSURB)
		b.replied(tc.backlog, now)
		if got := b.deficit(now); got != tc.want {
			t.Errorf("%d per SURB, backlog %d: deficit %d, want %d", tc.perSURB, tc.backlog, got, tc.want)
		}
	}
}
