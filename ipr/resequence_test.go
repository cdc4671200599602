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
	if !reflect.DeepEqual(NewResequencer[int](ResequencerConfig{}).cfg, ResequencerConfig{Timeout: DefaultReorderTimeout, MaxBuffered: DefaultMaxBuffered, MaxTimeout: 8 * DefaultReorderTimeout}) {
		t.Fatal("defaults not applied")
	}
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// The mixnet's delay is more than its mixing: a reply also waits for the
// gateway's next downstream slot behind the replies queued before it, and a
// loaded node adds its queue. Every gap the fixed timeout gave up in the
// anonymous-plus shape test's download came after all (Late equalled
// SeqsSkipped in every run, quiet or loaded), and each such give-up shows TCP
// a hole it answers with a spurious retransmission and a halved window. A
// message that comes late says how much longer the gap should have been
// waited for: the resequencer waits that long for the next gaps.
func TestResequencerLearnsLateness(t *testing.T) {
	const timeout = 100 * time.Millisecond
	h := newReseq(timeout, 64)
	// Every tenth message comes 250 ms after the nine behind it (a
	// message every 5 ms); none is lost.
	const n = 200
	at := func(seq int) time.Duration {
		d := time.Duration(seq) * 5 * time.Millisecond
		if seq%10 == 5 {
			d += 250 * time.Millisecond
		}
		return d
	}
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return int(at(a) - at(b)) })
	for _, seq := range order {
		h.expire(at(seq))
		h.push(seq, at(seq))
	}
	h.expire(at(n-1) + time.Hour)
	st := h.r.Stats()
	if st.Released != n {
		t.Fatalf("released %d of %d: %+v", st.Released, n, st)
	}
	// The first late message (5, at 275 ms) teaches it; by then the gaps
	// of 15 and 25 were given up too (at 180 and 230 ms). The 17 after
	// are waited for.
	if st.Late > 3 {
		t.Fatalf("%d of %d delayed messages released out of order after their gap was given up: %+v", st.Late, n/10, st)
	}
	if got := h.r.Timeout(); got <= timeout {
		t.Fatalf("timeout %v after late arrivals, want more than %v", got, timeout)
	}
}

// A learned timeout is bounded, and goes back down when gaps are given up
// and nothing from them comes: lost messages are not waited for forever.
func TestResequencerLearnedTimeoutBoundedAndDecays(t *testing.T) {
	const timeout = 100 * time.Millisecond
	r := NewResequencer[int](ResequencerConfig{Timeout: timeout})
	if r.cfg.MaxTimeout != 8*timeout {
		t.Fatalf("max timeout %v, want 8 × %v", r.cfg.MaxTimeout, timeout)
	}
	var now time.Time = t0
	nop := func(int) {}
	seq := uint64(0)
	// A gap given up, and its message an hour late: the timeout grows to
	// its bound and no further.
	r.Push(seq+1, 0, now, nop)
	now = now.Add(timeout)
	r.Expire(now, nop)
	now = now.Add(time.Hour)
	r.Push(seq, 0, now, nop)
	if r.Stats().Late != 1 || r.Timeout() != r.cfg.MaxTimeout {
		t.Fatalf("timeout %v after a late arrival (%+v), want the bound %v", r.Timeout(), r.Stats(), r.cfg.MaxTimeout)
	}
	// Then only real losses: each gap given up at the learned timeout,
	// nothing late. The timeout comes back to the configured one.
	seq = r.Next()
	for range 200 {
		r.Push(seq+1, 0, now, nop)
		d, ok := r.Deadline()
		if !ok || d.Sub(now) != r.Timeout() {
			t.Fatalf("deadline %v after now, want the timeout %v", d.Sub(now), r.Timeout())
		}
		now = d
		r.Expire(now, nop)
		seq += 2
	}
	if r.Timeout() != timeout {
		t.Fatalf("timeout %v after 100 real losses, want back to %v", r.Timeout(), timeout)
	}
}
