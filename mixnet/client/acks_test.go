package client

import (
	"testing"
	"time"
)

func TestAckTracker(t *testing.T) {
	tr := newAckTracker()
	now := time.Now()
	a := &job{ackID: [16]byte{1}}
	b := &job{ackID: [16]byte{2}}
	tr.track(a, packetMixes{}, now.Add(time.Second))
	tr.track(b, packetMixes{}, now.Add(2*time.Second))

	late, wait := tr.expired(now)
	if len(late) != 0 || wait != time.Second {
		t.Fatalf("nothing is late yet: %d, next in %v", len(late), wait)
	}
	if j, _, ok := tr.ack(b.ackID); !ok || j != b {
		t.Fatal("ack of b not matched")
	}
	if _, _, ok := tr.ack(b.ackID); ok {
		t.Fatal("second ack of b matched")
	}
	late, _ = tr.expired(now.Add(3 * time.Second))
	if len(late) != 1 || late[0].j != a {
		t.Fatalf("late: %d, want a only", len(late))
	}
	// a waits to be resent: still known, so a late ack counts.
	if tr.len() != 1 {
		t.Fatalf("%d pending, want 1", tr.len())
	}
	// Resent and tracked again: only the new deadline counts.
	tr.track(a, packetMixes{}, now.Add(10*time.Second))
	if late, _ := tr.expired(now.Add(5 * time.Second)); len(late) != 0 {
		t.Fatal("an old deadline fired after a resend")
	}
	if _, _, ok := tr.ack(a.ackID); !ok {
		t.Fatal("ack after resend not matched")
	}
	if late, wait := tr.expired(now.Add(time.Minute)); len(late) != 0 || wait != -1 {
		t.Fatalf("acked fragment still timed: %d, %v", len(late), wait)
	}
}
