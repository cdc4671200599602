package replay

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// Small filters keep these tests fast: 10,000 tags at 1e-4 is about 24 KiB,
// smaller than one 64 KiB chunk; testCapBig spans several chunks.
const (
	testCap    = 10_000
	testCapBig = 300_000
	testFP     = 1e-4
)

var testBinding = [32]byte{1, 2, 3, 4, 5, 6, 7, 8}

// fill inserts n fresh tags into f and returns them.
func fill(t testing.TB, f *Filter, src *tagSource, n int) [][32]byte {
	t.Helper()
	tags := make([][32]byte, n)
	for i := range tags {
		tags[i] = src.next()
		f.Seen(tags[i])
	}
	return tags
}

func TestSaveLoadRoundTrip(t *testing.T) {
	for _, capacity := range []uint64{testCap, testCapBig} {
		f := mustNew(t, capacity, testFP)
		src := newTagSource(t)
		tags := fill(t, f, src, int(capacity/2))
		path := filepath.Join(t.TempDir(), "filter")
		if err := f.Save(path, testBinding); err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("file mode %v, want 0600", st.Mode().Perm())
		}
		if want := int64(fileHeaderSize) + int64(f.Bytes()) + fileSumSize; st.Size() != want {
			t.Errorf("file size %d, want %d", st.Size(), want)
		}
		g, err := Load(path, testBinding, capacity, testFP)
		if err != nil {
			t.Fatal(err)
		}
		if g.Inserted() != f.Inserted() || g.Capacity() != capacity || g.Bytes() != f.Bytes() {
			t.Errorf("loaded %s with %d inserted, saved %s with %d", g, g.Inserted(), f, f.Inserted())
		}
		for i, tag := range tags {
			if !g.Seen(tag) {
				t.Fatalf("tag %d seen before the save is new after the load", i)
			}
		}
		fresh := 0
		for range 10_000 {
			if !g.Seen(src.next()) {
				fresh++
			}
		}
		if fresh < 9_900 { // about one in 10^4 is a false positive at half capacity
			t.Errorf("only %d of 10000 new tags reported new after the load", fresh)
		}
		// Saving again replaces the file and leaves no temporary behind.
		if err := g.Save(path, testBinding); err != nil {
			t.Fatal(err)
		}
		entries, _ := os.ReadDir(filepath.Dir(path))
		if len(entries) != 1 {
			t.Errorf("directory holds %d files after two saves, want 1", len(entries))
		}
	}
}

// encoded returns a valid file's bytes for a small filter with some tags.
func encoded(t testing.TB, capacity uint64, fp float64) []byte {
	t.Helper()
	f := mustNew(t, capacity, fp)
	fill(t, f, newTagSource(t), int(capacity/100))
	var b bytes.Buffer
	n, err := f.Encode(&b, testBinding)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(b.Len()) {
		t.Fatalf("Encode reported %d bytes, wrote %d", n, b.Len())
	}
	return b.Bytes()
}

func TestLoadRefuses(t *testing.T) {
	good := encoded(t, testCap, testFP)
	edit := func(fn func(b []byte) []byte) []byte {
		return fn(bytes.Clone(good))
	}
	cases := []struct {
		name     string
		data     []byte
		binding  [32]byte
		capacity uint64
		want     error
	}{
		{"magic", edit(func(b []byte) []byte { b[0] = 'X'; return b }), testBinding, testCap, ErrMagic},
		{"version", edit(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[8:], 2); return b }), testBinding, testCap, ErrVersion},
		{"binding", good, [32]byte{9}, testCap, ErrBinding},
		{"geometry in file", edit(func(b []byte) []byte { b[16]++; return b }), testBinding, testCap, ErrGeometry},
		{"hashes in file", edit(func(b []byte) []byte { b[12]++; return b }), testBinding, testCap, ErrGeometry},
		{"geometry configured", good, testBinding, 2 * testCap, ErrGeometry},
		{"flipped bit", edit(func(b []byte) []byte { b[fileHeaderSize+100] ^= 4; return b }), testBinding, testCap, ErrChecksum},
		{"inserted count", edit(func(b []byte) []byte { b[24]++; return b }), testBinding, testCap, ErrChecksum},
		{"checksum", edit(func(b []byte) []byte { b[len(b)-1] ^= 1; return b }), testBinding, testCap, ErrChecksum},
		{"empty", nil, testBinding, testCap, ErrTruncated},
		{"short header", good[:fileHeaderSize-1], testBinding, testCap, ErrTruncated},
		{"short body", good[:fileHeaderSize+64], testBinding, testCap, ErrTruncated},
		{"no checksum", good[:len(good)-fileSumSize], testBinding, testCap, ErrTruncated},
		{"short checksum", good[:len(good)-1], testBinding, testCap, ErrTruncated},
		{"trailing data", append(bytes.Clone(good), 0), testBinding, testCap, ErrTrailing},
	}
	dir := t.TempDir()
	for _, c := range cases {
		path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-"))
		if err := os.WriteFile(path, c.data, 0o600); err != nil {
			t.Fatal(err)
		}
		f, err := Load(path, c.binding, c.capacity, testFP)
		if !errors.Is(err, c.want) || !errors.Is(err, ErrInvalidFile) || f != nil {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		} else if !strings.Contains(err.Error(), path) {
			t.Errorf("%s: error %q does not name the file", c.name, err)
		}
	}
	if _, err := Load(filepath.Join(dir, "missing"), testBinding, testCap, testFP); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: got %v, want os.ErrNotExist", err)
	}
	if _, err := Load(filepath.Join(dir, "magic"), testBinding, 0, testFP); err == nil || errors.Is(err, ErrInvalidFile) {
		t.Errorf("zero capacity: got %v, want a configuration error", err)
	}
}

// failingWriter fails after n bytes, like a full disk.
type failingWriter struct{ n int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		k := w.n
		w.n = 0
		return k, errors.New("disk full")
	}
	w.n -= len(p)
	return len(p), nil
}

func TestSaveFailures(t *testing.T) {
	f := mustNew(t, testCapBig, testFP)
	for _, limit := range []int{0, fileHeaderSize + 10, fileHeaderSize + int(f.Bytes())} {
		if _, err := f.Encode(&failingWriter{n: limit}, testBinding); err == nil {
			t.Errorf("Encode with a writer failing after %d bytes succeeded", limit)
		}
	}
	if err := f.Save(filepath.Join(t.TempDir(), "no-such-dir", "filter"), testBinding); err == nil {
		t.Error("Save into a missing directory succeeded")
	}
}

// TestSaveDuringSeen saves while workers insert. Under -race it checks that
// Save reads the bits safely; in any build, every tag inserted before the save
// started must be in the file.
func TestSaveDuringSeen(t *testing.T) {
	f := mustNew(t, testCapBig, testFP)
	src := newTagSource(t)
	before := fill(t, f, src, 50_000)
	path := filepath.Join(t.TempDir(), "filter")

	var stop atomic.Bool
	var wg sync.WaitGroup
	for range max(2, runtime.GOMAXPROCS(0)) {
		s := newTagSource(t)
		wg.Go(func() {
			for !stop.Load() {
				f.Seen(s.next())
			}
		})
	}
	for range 3 {
		if err := f.Save(path, testBinding); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()

	g, err := Load(path, testBinding, testCapBig, testFP)
	if err != nil {
		t.Fatal(err)
	}
	for i, tag := range before {
		if !g.Seen(tag) {
			t.Fatalf("tag %d inserted before the save is missing from it", i)
		}
	}
	if g.Inserted() < uint64(len(before))-10 || g.Inserted() > f.Inserted() {
		t.Errorf("file counts %d tags: want between %d and %d", g.Inserted(), len(before)-10, f.Inserted())
	}
}

func TestInsertedCounts(t *testing.T) {
	f := mustNew(t, testCap, testFP)
	src := newTagSource(t)
	tag := src.next()
	f.Seen(tag)
	f.Seen(tag) // a replay adds nothing
	if f.Inserted() != 1 {
		t.Errorf("Inserted %d after one tag and its replay, want 1", f.Inserted())
	}
}

func TestBytesFor(t *testing.T) {
	n, err := BytesFor(testCap, testFP)
	if err != nil || n != mustNew(t, testCap, testFP).Bytes() {
		t.Errorf("BytesFor = %d, %v; New's filter takes %d", n, err, mustNew(t, testCap, testFP).Bytes())
	}
	if _, err := BytesFor(testCap, 0); err == nil {
		t.Error("BytesFor accepted a zero false-positive rate")
	}
}

// A filter of two blocks for the fuzz target: a valid file is 224 bytes, so
// the fuzzer can reach every check, and minimising an input is quick.
const (
	fuzzCap = 100
	fuzzFP  = 1e-2
)

// FuzzLoadHeader feeds arbitrary bytes to the header decoder and to Decode for
// a tiny filter: neither may panic, a decoded header must re-encode to the
// same bytes, and Decode may only succeed on a file that checks out.
func FuzzLoadHeader(f *testing.F) {
	good := encoded(f, fuzzCap, fuzzFP)
	f.Add(good)
	f.Add(good[:fileHeaderSize])
	f.Add([]byte{})
	f.Add(append(bytes.Clone(good[:fileHeaderSize]), 0xff))
	g, err := size(fuzzCap, fuzzFP)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if h, err := unmarshalHeader(data); err == nil {
			again := h.marshal()
			if !bytes.Equal(again[:], data[:fileHeaderSize]) {
				t.Fatalf("header does not round-trip: %x → %x", data[:fileHeaderSize], again)
			}
		} else if !errors.Is(err, ErrInvalidFile) {
			t.Fatalf("header error %v does not wrap ErrInvalidFile", err)
		}
		filter, err := decode(bytes.NewReader(data), testBinding, fuzzCap, g)
		if err == nil {
			// Accepted: then the input must be exactly a filter's encoding.
			var b bytes.Buffer
			if _, err := filter.Encode(&b, testBinding); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b.Bytes(), data) {
				t.Fatal("Decode accepted bytes that do not re-encode to themselves")
			}
		} else if !errors.Is(err, ErrInvalidFile) && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("Decode error %v does not wrap ErrInvalidFile", err)
		}
	})
}

// TestSaveSparse saves filters that are mostly zero, which Save writes as
// holes: they must read back the same.
func TestSaveSparse(t *testing.T) {
	src := newTagSource(t)
	for _, tags := range []int{0, 1} {
		f := mustNew(t, testCapBig, testFP)
		saved := fill(t, f, src, tags)
		path := filepath.Join(t.TempDir(), "filter")
		if err := f.Save(path, testBinding); err != nil {
			t.Fatal(err)
		}
		g, err := Load(path, testBinding, testCapBig, testFP)
		if err != nil {
			t.Fatalf("%d tags: %v", tags, err)
		}
		for _, tag := range saved {
			if !g.Seen(tag) {
				t.Errorf("%d tags: saved tag lost", tags)
			}
		}
		if g.Inserted() != uint64(tags) {
			t.Errorf("%d tags: loaded count %d", tags, g.Inserted())
		}
	}
}
