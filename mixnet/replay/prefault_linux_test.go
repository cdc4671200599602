package replay

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// residentBytes is this process's resident memory, from /proc/self/statm.
func residentBytes(t *testing.T) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(string(b))
	pages, err := strconv.ParseUint(fields[1], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return pages * uint64(os.Getpagesize())
}

// TestPrefault: after Prefault the whole filter is resident, and its bits
// are what they were.
func TestPrefault(t *testing.T) {
	src := newTagSource(t)
	before := residentBytes(t)
	f := mustNew(t, 10_000_000, DefaultFPRate) // ~37 MB
	if got := residentBytes(t) - before; got > f.Bytes()/2 {
		t.Skipf("the runtime handed New %d bytes already touched (recycled memory); nothing to measure", got)
	}
	added := make([][32]byte, 1000)
	for i := range added {
		added[i] = src.next()
		f.Seen(added[i])
	}

	f.Prefault()
	if got := residentBytes(t) - before; got < f.Bytes()*9/10 {
		t.Fatalf("after Prefault %d bytes more are resident, want about the filter's %d", got, f.Bytes())
	}
	for _, tag := range added {
		if !f.Seen(tag) {
			t.Fatal("Prefault lost a tag")
		}
	}
	if f.Inserted() != uint64(len(added)) {
		t.Fatalf("Inserted = %d, want %d", f.Inserted(), len(added))
	}
	fresh := 0
	for range 1000 {
		if !f.Seen(src.next()) {
			fresh++
		}
	}
	if fresh < 990 {
		t.Fatalf("only %d of 1000 fresh tags were new after Prefault: it set bits", fresh)
	}
}
