package codel

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func ms(n float64) time.Duration { return time.Duration(n * float64(time.Millisecond)) }

// newQueue returns a queue whose Release records the time of every discard
// (the test's clock, *now).
func newQueue(t *testing.T, cfg Config, now *time.Time) (*Queue, *[]time.Time) {
	t.Helper()
	var released []time.Time
	cfg.Release = func([]byte) { released = append(released, *now) }
	q, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return q, &released
}

// The control law: with a standing queue, the first drop comes one interval
// after the sojourn first exceeded target, the k-th next one
// interval/√k after the previous one — spaced from the scheduled time, not
// from when a dequeue happened to come.
func TestControlLawSpacing(t *testing.T) {
	for _, tc := range []struct {
		name             string
		target, interval time.Duration
		step             time.Duration // between dequeue opportunities
	}{
		{"RFC defaults, 1 ms slots", 5 * time.Millisecond, 100 * time.Millisecond, time.Millisecond},
		{"mixnet upstream, 1 ms slots", 40 * time.Millisecond, 400 * time.Millisecond, time.Millisecond},
		{"coarse slots", 5 * time.Millisecond, 100 * time.Millisecond, 7 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var now time.Time
			q, drops := newQueue(t, Config{Target: tc.target, Interval: tc.interval, MaxPackets: 100000, MaxBytes: 1 << 30}, &now)
			for range 20000 {
				q.Push(make([]byte, 100), t0) // a standing queue that never drains
			}
			// The first opportunity past target starts the interval.
			start := t0.Add(tc.target + tc.step)
			var popped int
			for now = start; now.Before(start.Add(20 * tc.interval)); now = now.Add(tc.step) {
				if _, _, ok := q.PopIf(now, nil); !ok {
					t.Fatalf("%v: nothing popped from a standing queue", now.Sub(t0))
				}
				popped++
			}
			if len(*drops) < 10 {
				t.Fatalf("%d drops in 20 intervals of a standing queue", len(*drops))
			}
			if got := q.Len() + popped + len(*drops); got != 20000 {
				t.Fatalf("queued+popped+dropped = %d, pushed 20000", got)
			}
			// The first drop is due an interval after the first
			// opportunity above target; the (k+1)-th interval/√k
			// after the k-th was due, the first counted from when it
			// happened.
			sched := start.Add(tc.interval)
			for k, got := range *drops {
				// A drop happens at the first opportunity at or
				// after it is due.
				if got.Before(sched) || got.Sub(sched) >= tc.step {
					t.Fatalf("drop %d at %v, due %v (slots every %v)", k+1, got.Sub(t0), sched.Sub(t0), tc.step)
				}
				if k == 0 {
					sched = got
				}
				sched = sched.Add(time.Duration(float64(tc.interval) / math.Sqrt(float64(k+1))))
			}
		})
	}
}

// step is one event of a scenario: packets arrive, then dequeue
// opportunities come; want* are checked after it.
type step struct {
	at           time.Duration // since t0
	push         int           // packets arriving at at
	pop          int           // opportunities at at
	wantDrops    uint64        // cumulative CoDel drops after the step
	wantDropping bool
	wantCount    uint32 // checked when wantDropping
}

func runSteps(t *testing.T, q *Queue, steps []step) {
	t.Helper()
	for i, s := range steps {
		now := t0.Add(s.at)
		for range s.push {
			q.Push(make([]byte, 100), now)
		}
		for range s.pop {
			q.PopIf(now, nil)
		}
		if got := q.Stats().Sojourn; got != s.wantDrops {
			t.Fatalf("step %d (%v): %d drops, want %d", i, s.at, got, s.wantDrops)
		}
		if q.dropping != s.wantDropping {
			t.Fatalf("step %d (%v): dropping %v, want %v", i, s.at, q.dropping, s.wantDropping)
		}
		if s.wantDropping && q.count != s.wantCount {
			t.Fatalf("step %d (%v): count %d, want %d", i, s.at, q.count, s.wantCount)
		}
	}
}

// Entering and leaving the drop state, and RFC 8289's reuse of the last drop
// rate: re-entering within 16 intervals of the last scheduled drop starts
// from count − lastcount (when above 1), later from 1.
func TestDropStateAndCountReuse(t *testing.T) {
	cfg := Config{Target: ms(5), Interval: ms(100)}
	tests := []struct {
		name  string
		steps []step
	}{
		{"below target never drops", []step{
			{at: 0, push: 50},
			{at: ms(4), pop: 50},
			{at: ms(500), push: 40},
			{at: ms(504), pop: 40},
		}},
		{"enter after one interval above target", []step{
			{at: 0, push: 100},
			{at: ms(10), pop: 1},  // above target: the interval starts
			{at: ms(109), pop: 1}, // not an interval yet
			{at: ms(110), pop: 1, wantDrops: 1, wantDropping: true, wantCount: 1}, // enter: drop one
			{at: ms(150), pop: 5, wantDrops: 1, wantDropping: true, wantCount: 1},
			{at: ms(210), pop: 1, wantDrops: 2, wantDropping: true, wantCount: 2},
			{at: ms(280), pop: 1, wantDrops: 2, wantDropping: true, wantCount: 2}, // next at 210+100/√2
			{at: ms(281), pop: 1, wantDrops: 3, wantDropping: true, wantCount: 3},
		}},
		{"leave when the sojourn falls below target", []step{
			{at: 0, push: 10},
			{at: ms(10), pop: 1},
			{at: ms(110), pop: 1, wantDrops: 1, wantDropping: true, wantCount: 1},
			{at: ms(110), pop: 6, wantDrops: 1, wantDropping: true, wantCount: 1}, // one old packet left
			{at: ms(200), push: 5, wantDrops: 1, wantDropping: true, wantCount: 1},
			{at: ms(201), pop: 2, wantDrops: 1},  // the old one (no drop due yet), then a fresh head: leave
			{at: ms(1000), pop: 1, wantDrops: 1}, // above target again: a new interval starts
		}},
		{"a late opportunity drops all that are due", []step{
			{at: 0, push: 200},
			{at: ms(10), pop: 1},
			{at: ms(110), pop: 1, wantDrops: 1, wantDropping: true, wantCount: 1},
			// Due at 210, 280.7, 338.4, 388.4: by 390 four drops.
			{at: ms(390), pop: 1, wantDrops: 5, wantDropping: true, wantCount: 5},
		}},
		{"count reused within 16 intervals", []step{
			{at: 0, push: 300},
			{at: ms(10), pop: 1},
			{at: ms(110), pop: 1, wantDrops: 1, wantDropping: true, wantCount: 1},
			{at: ms(390), pop: 1, wantDrops: 5, wantDropping: true, wantCount: 5},
			{at: ms(391), pop: 300, wantDrops: 5}, // drained: leave (dropNext 433)
			{at: ms(400), push: 100, wantDrops: 5},
			{at: ms(410), pop: 1, wantDrops: 5},
			// Re-enter 110 ms after: count = 5 − lastcount 1 = 4.
			{at: ms(510), pop: 1, wantDrops: 6, wantDropping: true, wantCount: 4},
		}},
		{"count restarts after 16 intervals", []step{
			{at: 0, push: 300},
			{at: ms(10), pop: 1},
			{at: ms(110), pop: 1, wantDrops: 1, wantDropping: true, wantCount: 1},
			{at: ms(390), pop: 1, wantDrops: 5, wantDropping: true, wantCount: 5},
			{at: ms(391), pop: 300, wantDrops: 5},
			{at: ms(2100), push: 100, wantDrops: 5},
			{at: ms(2110), pop: 1, wantDrops: 5},
			{at: ms(2210), pop: 1, wantDrops: 6, wantDropping: true, wantCount: 1},
		}},
		{"no reuse after a single drop", []step{
			{at: 0, push: 300},
			{at: ms(10), pop: 1},
			{at: ms(110), pop: 1, wantDrops: 1, wantDropping: true, wantCount: 1},
			{at: ms(111), pop: 300, wantDrops: 1},
			{at: ms(150), push: 100, wantDrops: 1},
			{at: ms(160), pop: 1, wantDrops: 1},
			{at: ms(260), pop: 1, wantDrops: 2, wantDropping: true, wantCount: 1},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var now time.Time
			q, _ := newQueue(t, cfg, &now)
			runSteps(t, q, tc.steps)
		})
	}
}

// A lone packet is never dropped, however long it waited and whatever state
// CoDel is in: dropping it would free no queue.
func TestSinglePacketNeverDropped(t *testing.T) {
	var now time.Time
	q, drops := newQueue(t, Config{Target: ms(5), Interval: ms(100)}, &now)
	// Drive CoDel into its drop state with a standing queue.
	for range 300 {
		q.Push(make([]byte, 100), t0)
	}
	for now = t0.Add(ms(10)); q.Len() > 1; now = now.Add(ms(1)) {
		q.PopIf(now, nil)
	}
	if len(*drops) == 0 {
		t.Fatal("setup: the standing queue saw no drop")
	}
	if q.Len() == 0 { // the last two went at once: a drop and a pop
		q.Push(make([]byte, 100), t0)
	}
	before := len(*drops)
	now = now.Add(time.Hour)
	if _, _, ok := q.PopIf(now, nil); !ok {
		t.Fatal("the last packet of a dropping queue was dropped")
	}
	// Lone packets of any age, one at a time.
	for i := range 50 {
		q.Push(make([]byte, 100), now)
		now = now.Add(time.Duration(i) * 100 * time.Millisecond)
		if _, _, ok := q.PopIf(now, nil); !ok {
			t.Fatalf("lone packet %d (waited %v) dropped", i, time.Duration(i)*100*time.Millisecond)
		}
	}
	if len(*drops) != before {
		t.Fatalf("%d drops of lone packets", len(*drops)-before)
	}
}

// MaxPacket: with no more than one opportunity's worth behind the head the
// queue is no standing queue, however old.
func TestMaxPacketIsNoStandingQueue(t *testing.T) {
	for _, tc := range []struct {
		maxPacket int
		queued    int // packets of 100 bytes
		wantDrops bool
	}{
		{0, 2, true},
		{100, 2, false},
		{100, 3, true},
		{1000, 11, false},
		{1000, 12, true},
	} {
		var now time.Time
		q, drops := newQueue(t, Config{Target: ms(5), Interval: ms(100), MaxPacket: tc.maxPacket}, &now)
		for range tc.queued {
			q.Push(make([]byte, 100), t0)
		}
		// Opportunities that never take a packet (nothing fits) keep the
		// queue as it is while time passes.
		never := func(int) bool { return false }
		for now = t0; now.Before(t0.Add(time.Second)); now = now.Add(ms(10)) {
			q.PopIf(now, never)
		}
		if got := len(*drops) > 0; got != tc.wantDrops {
			t.Errorf("MaxPacket %d, %d packets: dropped %d, want drops %v", tc.maxPacket, tc.queued, len(*drops), tc.wantDrops)
		}
	}
}

func TestLimits(t *testing.T) {
	var now time.Time
	q, released := newQueue(t, Config{MaxPackets: 3, MaxBytes: 250}, &now)
	if !q.Push(make([]byte, 100), t0) || !q.Push(make([]byte, 100), t0) {
		t.Fatal("push refused below the limits")
	}
	if q.Push(make([]byte, 100), t0) {
		t.Fatal("push over the byte limit accepted")
	}
	if !q.Push(make([]byte, 50), t0) {
		t.Fatal("push up to the byte limit refused")
	}
	if q.Push(nil, t0) {
		t.Fatal("push over the packet limit accepted")
	}
	if st := q.Stats(); st.Full != 2 || len(*released) != 2 {
		t.Fatalf("refusals: %+v, %d released; want 2 and 2", st, len(*released))
	}
	if q.Len() != 3 || q.Bytes() != 250 {
		t.Fatalf("Len %d Bytes %d, want 3, 250", q.Len(), q.Bytes())
	}
	// Unshift puts back what was popped, even at the limits.
	pkt, at, ok := q.PopIf(t0, nil)
	if !ok || len(pkt) != 100 || !at.Equal(t0) {
		t.Fatalf("PopIf: %d bytes at %v, %v", len(pkt), at, ok)
	}
	if !q.Push(make([]byte, 100), t0) {
		t.Fatal("push refused after a pop")
	}
	q.Unshift(pkt, at)
	if q.Len() != 4 || q.Bytes() != 350 {
		t.Fatalf("after Unshift: Len %d Bytes %d, want 4, 350", q.Len(), q.Bytes())
	}
	if n := q.Reset(); n != 4 || q.Len() != 0 || q.Bytes() != 0 || len(*released) != 6 || q.Stats().Reset != 4 {
		t.Fatalf("Reset: %d, Len %d Bytes %d, %d released, %+v", n, q.Len(), q.Bytes(), len(*released), q.Stats())
	}
}

// PopIf takes the head only if it fits; a head that does not stays first.
func TestPopIfKeepsOrder(t *testing.T) {
	q, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		q.Push(make([]byte, 10*(i+1)), t0.Add(time.Duration(i)))
	}
	room := 35
	fits := func(n int) bool { return n <= room }
	var got []int
	for {
		pkt, _, ok := q.PopIf(t0, fits)
		if !ok {
			break
		}
		room -= len(pkt)
		got = append(got, len(pkt))
	}
	if len(got) != 2 || got[0] != 10 || got[1] != 20 || q.Len() != 3 {
		t.Fatalf("packed %v, %d left; want [10 20], 3 left", got, q.Len())
	}
	pkt, at, ok := q.PopIf(t0, nil)
	if !ok || len(pkt) != 30 || !at.Equal(t0.Add(2)) {
		t.Fatalf("next head: %d bytes at %v", len(pkt), at)
	}
	q.Unshift(pkt, at)
	if pkt, ok := q.Peek(); !ok || len(pkt) != 30 || q.Len() != 3 {
		t.Fatalf("Peek after Unshift: %d bytes, %v, Len %d", len(pkt), ok, q.Len())
	}
	if pkt, _, _ := q.PopIf(t0, nil); len(pkt) != 30 {
		t.Fatalf("after Unshift the head is %d bytes, want 30", len(pkt))
	}
}

// Every packet pushed leaves exactly once: popped, or released; and Len and
// Bytes agree with what is inside, under a random mix of operations.
func TestAccounting(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var now time.Time
	live := map[*byte]bool{}
	q, err := New(Config{Target: ms(5), Interval: ms(50), MaxPackets: 64, MaxBytes: 8000, Release: func(p []byte) {
		if !live[&p[0]] {
			t.Fatal("released a packet not in the queue")
		}
		delete(live, &p[0])
	}})
	if err != nil {
		t.Fatal(err)
	}
	now = t0
	var held [][]byte
	var heldAt []time.Time
	for range 100000 {
		now = now.Add(time.Duration(rng.IntN(3000)) * time.Microsecond)
		switch r := rng.IntN(10); {
		case r < 5:
			p := make([]byte, 1+rng.IntN(400))
			live[&p[0]] = true
			q.Push(p, now)
		case r < 9:
			room := rng.IntN(500)
			p, at, ok := q.PopIf(now, func(n int) bool { return n <= room })
			if ok {
				if !live[&p[0]] {
					t.Fatal("popped a packet not in the queue")
				}
				delete(live, &p[0])
				if rng.IntN(4) == 0 {
					live[&p[0]] = true
					held, heldAt = append(held, p), append(heldAt, at)
				}
			}
		default:
			for i := len(held) - 1; i >= 0; i-- {
				q.Unshift(held[i], heldAt[i])
			}
			held, heldAt = held[:0], heldAt[:0]
			if rng.IntN(50) == 0 {
				q.Reset()
			}
		}
		var bytes int
		for _, e := range q.items[q.head:] {
			bytes += len(e.data)
		}
		if q.Len()+len(held) != len(live) || q.Bytes() != bytes {
			t.Fatalf("Len %d (+%d held), %d live; Bytes %d, sum %d", q.Len(), len(held), len(live), q.Bytes(), bytes)
		}
	}
	if q.Stats().Sojourn == 0 || q.Stats().Full == 0 {
		t.Fatalf("the mix exercised too little: %+v", q.Stats())
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []Config{
		{Target: -1},
		{MaxBytes: -1},
		{Target: time.Second, Interval: time.Second},
		{Target: 200 * time.Millisecond}, // above the default interval
	} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
}
