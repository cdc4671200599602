package client

import (
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/nym-go/nym/mixnet/directory"
)

func testPolicy() SURBPolicy {
	return SURBPolicy{LowWater: 3, Request: 5, MaxPerSender: 8, MaxSenders: 2, MaxAge: time.Hour, RequestRetry: 10 * time.Second, Grant: 100}
}

func surbs(t *testing.T, n int) []replySURB {
	s := testSURB(t)
	out := make([]replySURB, n)
	for i := range out {
		out[i] = s
		out[i].surb.Key[0] = byte(i) // tell them apart
	}
	return out
}

func TestSURBStoreReplyAndRequest(t *testing.T) {
	s := newSURBStore(testPolicy())
	tag := AnonymousSenderTag{1}
	now := time.Now()
	if _, err := s.takeForReply(tag, 1, now); !errors.Is(err, ErrNoSURBs) {
		t.Fatalf("unknown tag: %v", err)
	}
	s.add(tag, surbs(t, 6), false, now)

	// 6 held, reply takes 2: 4 left, not below the low water of 3.
	plan, err := s.takeForReply(tag, 2, now)
	if err != nil || len(plan.surbs) != 2 || plan.request != nil {
		t.Fatalf("plan %+v, %v", plan, err)
	}
	if plan.surbs[0].surb.Key[0] != 0 || plan.surbs[1].surb.Key[0] != 1 {
		t.Fatal("SURBs not used oldest first")
	}
	// Reply takes 2 more: 2 left, below low water: one goes to a request.
	plan, _ = s.takeForReply(tag, 2, now)
	if len(plan.surbs) != 2 || plan.request == nil || plan.want != 5 {
		t.Fatalf("plan %+v: want 2 SURBs and a request for 5", plan)
	}
	if got := s.count(tag); got != 1 {
		t.Fatalf("%d SURBs left, want 1", got)
	}
	// A reply of 3 cannot be sent with 1; a request is outstanding, so wait.
	plan, err = s.takeForReply(tag, 3, now.Add(time.Second))
	if err != nil || plan.surbs != nil || plan.request != nil || plan.wait == nil {
		t.Fatalf("plan %+v, %v: want to wait", plan, err)
	}
	s.add(tag, surbs(t, 5), true, now.Add(2*time.Second))
	select {
	case <-plan.wait:
	default:
		t.Fatal("adding SURBs did not wake the waiter")
	}
	plan, _ = s.takeForReply(tag, 3, now.Add(2*time.Second))
	if len(plan.surbs) != 3 {
		t.Fatalf("after the top-up: %+v", plan)
	}
}

// SURBs that ride on the sender's own messages do not answer our request:
// only a grant lets us ask again before RequestRetry. Otherwise a sender
// that tops up with every packet draws a request per reply.
func TestSURBStoreRequestRearm(t *testing.T) {
	tag := AnonymousSenderTag{1}
	now := time.Now()
	for _, tc := range []struct {
		name      string
		answer    bool
		wantAgain bool
	}{
		{"piggybacked SURBs", false, false},
		{"granted SURBs", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSURBStore(testPolicy())
			s.add(tag, surbs(t, 4), false, now)
			// 4 held, reply takes 2: 2 left, below low water: a request.
			if plan, _ := s.takeForReply(tag, 2, now); plan.request == nil {
				t.Fatalf("no request below low water: %+v", plan)
			}
			s.add(tag, surbs(t, 3), tc.answer, now.Add(time.Second))
			// 4 held, reply takes 3: 1 left, below low water again.
			plan, _ := s.takeForReply(tag, 3, now.Add(time.Second))
			if again := plan.request != nil; again != tc.wantAgain {
				t.Fatalf("asked again: %v, want %v", again, tc.wantAgain)
			}
		})
	}
}

func TestSURBStoreLimits(t *testing.T) {
	s := newSURBStore(testPolicy())
	now := time.Now()
	a, b, c := AnonymousSenderTag{1}, AnonymousSenderTag{2}, AnonymousSenderTag{3}
	s.add(a, surbs(t, 20), false, now)
	if s.count(a) != 8 || s.total() != 8 {
		t.Fatalf("kept %d (total %d), limit 8 per sender", s.count(a), s.total())
	}
	s.add(b, surbs(t, 1), false, now.Add(time.Second))
	s.add(c, surbs(t, 1), false, now.Add(2*time.Second)) // evicts a, least recently used
	if s.count(a) != 0 || s.total() != 2 {
		t.Fatalf("after eviction: a has %d, total %d", s.count(a), s.total())
	}
	s.expire(now.Add(2 * time.Hour))
	if s.total() != 0 {
		t.Fatalf("%d SURBs survived MaxAge", s.total())
	}
}

func TestSURBStoreNoSURBsNoRequest(t *testing.T) {
	s := newSURBStore(testPolicy())
	tag := AnonymousSenderTag{1}
	now := time.Now()
	s.add(tag, surbs(t, 1), false, now)
	// One SURB, a reply of two: spend it on a request and wait.
	plan, err := s.takeForReply(tag, 2, now)
	if err != nil || plan.request == nil || plan.wait == nil {
		t.Fatalf("plan %+v, %v", plan, err)
	}
	// Nobody answered within RequestRetry, and we have nothing to ask with.
	if _, err := s.takeForReply(tag, 2, now.Add(11*time.Second)); !errors.Is(err, ErrNoSURBs) {
		t.Fatalf("after an unanswered request: %v", err)
	}
}

// Once the overlap after a key rotation ends, SURBs built for the old
// rotation are forgotten: a reply through one would be refused by its first
// mix and lost. During the overlap both parities still work.
func TestDropStaleSURBs(t *testing.T) {
	for _, tc := range []struct {
		name                    string
		epoch, rotation, epochs uint64
		wantLeft                [2]int // SURBs left of parity 0 and 1
	}{
		{"overlap: first epoch of rotation 1", 24, 1, 24, [2]int{2, 3}},
		{"past the overlap of rotation 1", 25, 1, 24, [2]int{0, 3}},
		{"past the overlap of rotation 2", 50, 2, 24, [2]int{2, 0}},
		{"no rotations", 7, 0, 0, [2]int{2, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			policy := testPolicy()
			policy.MaxPerSender = 10
			c := &Client{surbs: newSURBStore(policy), log: slog.New(slog.DiscardHandler)}
			tag := AnonymousSenderTag{1}
			held := surbs(t, 5)
			for i := range held {
				held[i].parity = uint8(min(i/2, 1)) // 2 of parity 0, 3 of parity 1
			}
			c.surbs.add(tag, held, false, time.Now())
			c.dropStaleSURBs(&directory.Topology{Epoch: tc.epoch, Rotation: tc.rotation, RotationEpochs: tc.epochs})
			var left [2]int
			for _, h := range c.surbs.senders[tag].surbs {
				left[h.s.parity]++
			}
			if left != tc.wantLeft || c.surbs.total() != left[0]+left[1] {
				t.Fatalf("left %v (total %d), want %v", left, c.surbs.total(), tc.wantLeft)
			}
			if got, want := c.stats.surbsDropped.Load(), uint64(5-left[0]-left[1]); got != want {
				t.Fatalf("SURBsDropped %d, want %d", got, want)
			}
		})
	}
}
