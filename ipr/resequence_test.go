package ipr

import (
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"
)

var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// reseqHarness records what a Resequencer[int] releases; messages are their
// own sequence numbers.
type reseqHarness struct {
	r   *Resequencer[int]
	out []int
}

func newReseq(timeout time.Duration, maxBuf int) *reseqHarness {
	return &reseqHarness{r: NewResequencer[int](ResequencerConfig{Timeout: timeout, MaxBuffered: maxBuf})}
}

func (h *reseqHarness) push(seq int, at time.Duration) {
	h.r.Push(uint64(seq), seq, t0.Add(at), func(m int) { h.out = append(h.out, m) })
}

func (h *reseqHarness) expire(at time.Duration) {
	h.r.Expire(t0.Add(at), func(m int) { h.out = append(h.out, m) })
}

func (h *reseqHarness) want(t *testing.T, want ...int) {
	t.Helper()
	if !slices.Equal(h.out, want) {
		t.Fatalf("released %v, want %v", h.out, want)
	}
}

func TestResequencerInOrder(t *testing.T) {
	h := newReseq(100*time.Millisecond, 8)
	for i := range 5 {
		h.push(i, time.Duration(i)*time.Millisecond)
	}
	h.want(t, 0, 1, 2, 3, 4)
	if s := h.r.Stats(); s != (ReorderStats{Released: 5}) {
		t.Fatalf("stats %+v", s)
	}
}

func TestResequencerReorders(t *testing.T) {
	h := newReseq(100*time.Millisecond, 8)
	h.push(0, 0)
	h.push(2, 1*time.Millisecond)
	h.push(3, 2*time.Millisecond)
	h.want(t, 0)
	if h.r.Buffered() != 2 {
		t.Fatalf("buffered %d", h.r.Buffered())
	}
	h.push(1, 30*time.Millisecond)
	h.want(t, 0, 1, 2, 3)
	s := h.r.Stats()
	if s.Reordered != 2 || s.GapsSkipped != 0 || s.Released != 4 {
		t.Fatalf("stats %+v", s)
	}
}

func TestResequencerGivesUpGapOnTimeout(t *testing.T) {
	h := newReseq(100*time.Millisecond, 8)
	h.push(0, 0)
	h.push(2, 10*time.Millisecond)
	h.push(4, 50*time.Millisecond)
	if d, ok := h.r.Deadline(); !ok || !d.Equal(t0.Add(110*time.Millisecond)) {
		t.Fatalf("deadline %v, %v", d, ok)
	}
	h.expire(109 * time.Millisecond)
	h.want(t, 0)
	h.expire(110 * time.Millisecond) // 2 waited 100 ms: give 1 up, and 2 goes
	h.want(t, 0, 2)
	h.expire(149 * time.Millisecond)
	h.want(t, 0, 2)
	h.expire(150 * time.Millisecond)
	h.want(t, 0, 2, 4)
	s := h.r.Stats()
	if s.GapsSkipped != 2 || s.SeqsSkipped != 2 {
		t.Fatalf("stats %+v", s)
	}
	// 1 turns up after all: late is better than lost.
	h.push(1, 200*time.Millisecond)
	h.want(t, 0, 2, 4, 1)
	if h.r.Stats().Late != 1 {
		t.Fatalf("stats %+v", h.r.Stats())
	}
	// …but not twice.
	h.push(1, 210*time.Millisecond)
	h.push(2, 210*time.Millisecond)
	h.want(t, 0, 2, 4, 1)
	if h.r.Stats().Duplicates != 2 {
		t.Fatalf("stats %+v", h.r.Stats())
	}
}

func TestResequencerBoundsBuffer(t *testing.T) {
	h := newReseq(time.Hour, 3)
	h.push(0, 0)
	for _, seq := range []int{2, 3, 4} {
		h.push(seq, 0)
	}
	h.want(t, 0)
	h.push(6, 0) // a fourth waiting message: gap 1 goes, 2..4 follow
	h.want(t, 0, 2, 3, 4)
	if h.r.Buffered() != 1 || h.r.Next() != 5 {
		t.Fatalf("buffered %d next %d", h.r.Buffered(), h.r.Next())
	}
}

func TestResequencerDuplicates(t *testing.T) {
	h := newReseq(time.Hour, 8)
	h.push(0, 0)
	h.push(0, 0) // released already
	h.push(2, 0)
	h.push(2, 0) // waiting already
	h.push(1, 0)
	h.want(t, 0, 1, 2)
	if s := h.r.Stats(); s.Duplicates != 2 || s.Released != 3 {
		t.Fatalf("stats %+v", s)
	}
}

func TestResequencerJumpAndTooOld(t *testing.T) {
	h := newReseq(time.Hour, 8)
	h.push(0, 0)
	h.push(2, 0)
	h.push(10_000, 0) // the sender is far ahead: release what waits, follow it
	h.want(t, 0, 2, 10_000)
	if h.r.Next() != 10_001 {
		t.Fatalf("next %d", h.r.Next())
	}
	h.push(1, 0) // far behind: cannot tell it from a duplicate
	h.want(t, 0, 2, 10_000)
	if s := h.r.Stats(); s.TooOld != 1 || s.SeqsSkipped != 1+(10_000-3) {
		t.Fatalf("stats %+v", s)
	}
}

// Random permutations inside a window come out whole and in order.
func TestResequencerRandomWindow(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	h := newReseq(time.Hour, 64)
	const n = 2000
	seqs := make([]int, n)
	for i := range seqs {
		seqs[i] = i
	}
	for i := 0; i < n; i += 16 {
		block := seqs[i:min(i+16, n)]
		rng.Shuffle(len(block), func(a, b int) { block[a], block[b] = block[b], block[a] })
	}
	for _, s := range seqs {
		h.push(s, 0)
	}
	if len(h.out) != n || !slices.IsSorted(h.out) {
		t.Fatalf("released %d, sorted %v", len(h.out), slices.IsSorted(h.out))
	}
}

func TestSeqWindow(t *testing.T) {
	var w seqWindow
	for _, tt := range []struct {
		seq  uint64
		want markResult
	}{
		{0, markNew}, {0, markDuplicate}, {5, markNew}, {3, markNew}, {5, markDuplicate},
		{5 + windowSize, markNew}, {6, markNew}, {4, markTooOld}, {7 + 64, markNew}, {5 + windowSize, markDuplicate},
		{1 << 40, markNew}, {1<<40 - 1, markNew}, {5 + windowSize, markTooOld},
	} {
		if got := w.mark(tt.seq); got != tt.want {
			t.Fatalf("mark(%d) = %d, want %d", tt.seq, got, tt.want)
		}
	}
}

func TestReorderTimeout(t *testing.T) {
	// One hop: exponential, quantile q at -ln(1-q) means.
	if got, want := ReorderTimeout(10*time.Millisecond, 1, 0.99), time.Duration(-math.Log(0.01)*float64(10*time.Millisecond)); absDur(got-want) > time.Microsecond {
		t.Fatalf("1 hop: %v, want %v", got, want)
	}
	// Three hops of 15 ms (Nym): the 0.999 quantile of Erlang(3) is 11.229 means.
	if got := DefaultReorderTimeout; absDur(got-time.Duration(11.229*float64(15*time.Millisecond))) > 100*time.Microsecond {
		t.Fatalf("default: %v", got)
	}
	if ReorderTimeout(0, 3, 0.9) != 0 || ReorderTimeout(time.Millisecond, 0, 0.9) != 0 {
		t.Fatal("degenerate inputs should give 0")
	}
	if !reflect.DeepEqual(NewResequencer[int](ResequencerConfig{}).cfg, ResequencerConfig{Timeout: DefaultReorderTimeout, MaxBuffered: DefaultMaxBuffered}) {
		t.Fatal("defaults not applied")
	}
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}
