package replay

import (
	"crypto/rand"
	"encoding/binary"
	"math"
	mrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// tagSource yields uniform tags, standing in for HKDF outputs. It is seeded
// from crypto/rand so each run sees different tags.
type tagSource struct{ r *mrand.ChaCha8 }

func newTagSource(t testing.TB) *tagSource {
	var seed [32]byte
	if _, err := rand.Read(seed[:]); err != nil {
		t.Fatal(err)
	}
	return &tagSource{mrand.NewChaCha8(seed)}
}

func (s *tagSource) next() (tag [32]byte) {
	for i := 0; i < len(tag); i += 8 {
		binary.LittleEndian.PutUint64(tag[i:], s.r.Uint64())
	}
	return tag
}

func mustNew(t testing.TB, capacity uint64, fp float64) *Filter {
	t.Helper()
	f, err := New(capacity, fp)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// measureFP is the fraction of fresh tags the filter claims to hold, probed
// without inserting them so the load stays where it is.
func measureFP(f *Filter, src *tagSource, queries int) float64 {
	hits := 0
	for range queries {
		tag := src.next()
		blk, mask := f.locate(&tag)
		if covered(f.words[blk*blockWords:(blk+1)*blockWords], &mask) {
			hits++
		}
	}
	return float64(hits) / float64(queries)
}

func TestNoFalseNegatives(t *testing.T) {
	const n = 200_000
	f := mustNew(t, n, 1e-4)
	src := newTagSource(t)
	tags := make([][32]byte, n)
	fresh := 0
	for i := range tags {
		tags[i] = src.next()
		if !f.Seen(tags[i]) {
			fresh++
		}
	}
	if fresh < n-100 { // ~n×1e-4/2 false positives expected while filling
		t.Errorf("%d of %d new tags reported new, expected nearly all", fresh, n)
	}
	// Overfill to three times capacity: old tags must still be found.
	for range 2 * n {
		f.Seen(src.next())
	}
	for i, tag := range tags {
		if !f.Seen(tag) {
			t.Fatalf("tag %d forgotten: a replay would be accepted", i)
		}
	}
}

// TestFalsePositiveRate fills a filter to capacity and checks the measured
// false-positive rate against the target, and beyond capacity against
// ExpectedFPRate.
func TestFalsePositiveRate(t *testing.T) {
	cases := []struct {
		capacity uint64
		target   float64
		queries  int
	}{
		{1_000_000, 1e-3, 1_000_000},
		{1_000_000, 1e-4, 4_000_000},
	}
	if !testing.Short() && !raceEnabled {
		cases = append(cases, struct {
			capacity uint64
			target   float64
			queries  int
		}{2_000_000, 1e-5, 40_000_000})
	}
	for _, c := range cases {
		if raceEnabled { // same rates, a tenth of the work
			c.capacity, c.queries = c.capacity/10, c.queries/10
		}
		f := mustNew(t, c.capacity, c.target)
		src := newTagSource(t)
		for range c.capacity {
			f.Seen(src.next())
		}
		want := f.ExpectedFPRate(c.capacity)
		got := measureFP(f, src, c.queries)
		sigma := math.Sqrt(want / float64(c.queries))
		t.Logf("target %g: %s; measured %.3g at capacity (predicted %.3g)", c.target, f, got, want)
		if want > c.target {
			t.Errorf("predicted rate at capacity %.3g above target %g", want, c.target)
		}
		if math.Abs(got-want) > 5*sigma+0.05*want {
			t.Errorf("measured false-positive rate %.3g, predicted %.3g (σ %.2g)", got, want, sigma)
		}
	}
}

// TestPastCapacity checks the documented degradation: at twice the capacity
// the measured rate follows ExpectedFPRate.
func TestPastCapacity(t *testing.T) {
	const n, queries = 200_000, 200_000
	f := mustNew(t, n, 1e-4)
	src := newTagSource(t)
	for range 2 * n {
		f.Seen(src.next())
	}
	got := measureFP(f, src, queries)
	want := f.ExpectedFPRate(2 * n)
	t.Logf("at 2× capacity: measured %.3g, predicted %.3g", got, want)
	if math.Abs(got-want) > 5*math.Sqrt(want/queries)+0.05*want {
		t.Errorf("measured %.3g, predicted %.3g", got, want)
	}
}

// TestConcurrentSeen races many goroutines on the same tags: for each tag at
// most one call may report it new.
func TestConcurrentSeen(t *testing.T) {
	const (
		tags       = 20_000
		goroutines = 8
	)
	f := mustNew(t, tags, 1e-6)
	src := newTagSource(t)
	all := make([][32]byte, tags)
	for i := range all {
		all[i] = src.next()
	}
	news := make([]atomic.Int32, tags)
	var start, wg sync.WaitGroup
	start.Add(1)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start.Wait()
			// Each goroutine walks the tags from a different offset, so
			// some calls meet head on and some follow each other.
			for i := range tags {
				j := (i + g*tags/goroutines) % tags
				if !f.Seen(all[j]) {
					news[j].Add(1)
				}
			}
		}()
	}
	start.Done()
	wg.Wait()
	missing := 0
	for i := range news {
		switch n := news[i].Load(); {
		case n > 1:
			t.Fatalf("tag %d reported new %d times: a replay was accepted", i, n)
		case n == 0:
			missing++ // a false positive on its first insertion
		}
	}
	if missing > 5 {
		t.Errorf("%d of %d tags never reported new, expected ≈%g", missing, tags, tags*1e-6)
	}
}

func TestNewRejects(t *testing.T) {
	for _, c := range []struct {
		capacity uint64
		fp       float64
	}{
		{0, 1e-5},
		{1000, 0},
		{1000, 1},
		{1000, math.NaN()},
		{1000, 1e-12},
		{math.MaxUint64 / 2, 1e-5}, // far over MaxBytes
	} {
		if _, err := New(c.capacity, c.fp); err == nil {
			t.Errorf("New(%d, %g) succeeded", c.capacity, c.fp)
		}
	}
}

func TestCapacityFor(t *testing.T) {
	if got := CapacityFor(2000, 25*time.Hour); got != 180_000_000 {
		t.Errorf("Nym's sizing: got %d, want 180,000,000", got)
	}
	if got := CapacityFor(DefaultRate, DefaultKeyLifetime); got != DefaultCapacity {
		t.Errorf("default: got %d, want %d", got, uint64(DefaultCapacity))
	}
	if got := CapacityFor(-1, time.Hour); got != 0 {
		t.Errorf("negative rate: got %d", got)
	}
	f := mustNew(t, DefaultCapacity, DefaultFPRate)
	t.Log(f)
	if f.Bytes() > 200<<20 {
		t.Errorf("default filter takes %d bytes, more than documented", f.Bytes())
	}
}
