package client

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

func newTestReassembler() *reassembler {
	return newReassembler(1<<20, 4<<20, time.Minute, 100)
}

func TestReassemblyOutOfOrderWithDuplicates(t *testing.T) {
	r := newTestReassembler()
	msg := make([]byte, 1000)
	for i := range msg {
		msg[i] = byte(i * 7)
	}
	frags, _ := splitMessage(7, msg, 100)
	order := rand.Perm(len(frags))
	now := time.Now()
	var got []byte
	for n, i := range order {
		// Every fragment arrives twice, the copy straight after it.
		for copyNo := range 2 {
			out, err := r.add(now, frags[i], origin{})
			if copyNo == 1 {
				if !errors.Is(err, errDuplicateFragment) {
					t.Fatalf("duplicate of fragment %d: err %v", i, err)
				}
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			if n < len(order)-1 && out != nil {
				t.Fatalf("message completed after %d of %d fragments", n+1, len(frags))
			}
			if out != nil {
				got = out
			}
		}
	}
	if !bytes.Equal(got, msg) {
		t.Fatal("reassembled message differs")
	}
	// A fragment retransmitted after its set completed is not a new message.
	if out, err := r.add(now, frags[3], origin{}); out != nil || !errors.Is(err, errDuplicateFragment) {
		t.Fatalf("late copy after completion: %v, %v", out, err)
	}
	if r.bytes != 0 || len(r.sets) != 0 {
		t.Fatalf("state left after completion: %d bytes in %d sets", r.bytes, len(r.sets))
	}
}

func TestReassemblyInterleavedSets(t *testing.T) {
	r := newTestReassembler()
	a, b := bytes.Repeat([]byte("a"), 250), bytes.Repeat([]byte("b"), 250)
	fa, _ := splitMessage(1, a, 100)
	fb, _ := splitMessage(2, b, 100)
	now := time.Now()
	var done [][]byte
	for i := range fa {
		for _, f := range []Fragment{fb[len(fb)-1-i], fa[i]} {
			out, err := r.add(now, f, origin{})
			if err != nil {
				t.Fatal(err)
			}
			if out != nil {
				done = append(done, out)
			}
		}
	}
	if len(done) != 2 || !bytes.Equal(done[0], b) && !bytes.Equal(done[1], b) {
		t.Fatalf("got %d messages", len(done))
	}
}

func TestReassemblyExpiry(t *testing.T) {
	r := newTestReassembler()
	frags, _ := splitMessage(5, make([]byte, 300), 100)
	t0 := time.Now()
	r.add(t0, frags[0], origin{})
	r.expire(t0.Add(30 * time.Second))
	if len(r.sets) != 1 {
		t.Fatal("set dropped before its timeout")
	}
	r.expire(t0.Add(61 * time.Second))
	if len(r.sets) != 0 || r.bytes != 0 || r.expired != 1 {
		t.Fatalf("stale set kept: %d sets, %d bytes", len(r.sets), r.bytes)
	}
	// The rest arriving later starts over and cannot complete from one
	// fragment short.
	now := t0.Add(62 * time.Second)
	if out, _ := r.add(now, frags[1], origin{}); out != nil {
		t.Fatal("completed from a partial set")
	}
	if out, _ := r.add(now, frags[2], origin{}); out != nil {
		t.Fatal("completed without the expired fragment")
	}
}

func TestReassemblyRejectsMismatches(t *testing.T) {
	r := newTestReassembler()
	now := time.Now()
	r.add(now, Fragment{SetID: 9, Count: 3, Index: 0, Data: []byte("x")}, origin{})
	if _, err := r.add(now, Fragment{SetID: 9, Count: 4, Index: 1}, origin{}); !errors.Is(err, errFragmentMismatch) {
		t.Errorf("count change accepted: %v", err)
	}
	// A fragment arriving another way than its set cannot join it: nobody
	// can forge part of a reply.
	if _, err := r.add(now, Fragment{SetID: 9, Count: 3, Index: 1}, origin{viaSURB: true}); !errors.Is(err, errFragmentMismatch) {
		t.Errorf("origin change accepted: %v", err)
	}
	if _, err := r.add(now, Fragment{SetID: 10, Count: uint16(r.maxFragments + 1)}, origin{}); !errors.Is(err, errSetTooLarge) {
		t.Errorf("oversized set accepted: %v", err)
	}
}

func TestReassemblyMemoryBound(t *testing.T) {
	r := newReassembler(1<<20, 1000, time.Minute, 100)
	now := time.Now()
	for set := range uint64(30) {
		now = now.Add(time.Millisecond)
		r.add(now, Fragment{SetID: set + 1, Count: 2, Data: make([]byte, 100)}, origin{})
		if r.bytes > 1000 {
			t.Fatalf("partial sets hold %d bytes, limit 1000", r.bytes)
		}
	}
	if _, ok := r.sets[30]; !ok {
		t.Fatal("the newest set was evicted")
	}
	if _, ok := r.sets[1]; ok {
		t.Fatal("the oldest set survived eviction")
	}
}
