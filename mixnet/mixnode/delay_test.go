package mixnode

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestReleaseHeapOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var h releaseHeap
	var want []time.Duration
	for round := range 50 {
		for range r.IntN(40) {
			d := time.Duration(r.IntN(1000))
			h.push(heldPacket{release: d})
			want = append(want, d)
		}
		slices.Sort(want)
		for range r.IntN(len(want) + 1) {
			if got := h.pop().release; got != want[0] {
				t.Fatalf("round %d: popped %v, want %v", round, got, want[0])
			}
			want = want[1:]
		}
		if len(h) != len(want) {
			t.Fatalf("round %d: heap holds %d, want %d", round, len(h), len(want))
		}
	}
}
