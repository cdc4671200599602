package client

import (
	"errors"
	"fmt"
	"time"
)

// origin says how a fragment reached us: through the forward path (sealed to
// our identity, sender unknown) or through one of our reply SURBs (from the
// holder of tag). A set must not mix origins, so nobody can slip a forged
// fragment into a reply.
type origin struct {
	viaSURB bool
	tag     AnonymousSenderTag
}

// reassembler collects fragments into messages. It is used by one goroutine.
//
// Memory is bounded three ways: a set may not claim more fragments than a
// message of maxMessage bytes needs, the partial sets together may not hold
// more than maxBytes, and a set that has received nothing for timeout is
// dropped. Completed set ids are remembered for timeout too, so a fragment
// retransmitted after its set completed is not taken for a new message.
type reassembler struct {
	maxFragments int
	maxBytes     int
	timeout      time.Duration

	sets  map[uint64]*partialSet
	done  map[uint64]time.Time // completed set id → when
	bytes int                  // data held by partial sets

	// Counters, read by the owner.
	duplicates, expired, evicted uint64
}

type partialSet struct {
	origin origin
	parts  map[uint16][]byte
	count  uint16
	size   int
	last   time.Time
}

var (
	errDuplicateFragment = errors.New("duplicate fragment")
	errFragmentMismatch  = errors.New("fragment does not match its set")
	errSetTooLarge       = errors.New("fragment set larger than the message limit")
)

func newReassembler(maxMessage, maxBytes int, timeout time.Duration, chunk int) *reassembler {
	mf := (maxMessage+chunk-1)/chunk + 1
	return &reassembler{
		maxFragments: min(mf, maxFragments),
		maxBytes:     maxBytes,
		timeout:      timeout,
		sets:         make(map[uint64]*partialSet),
		done:         make(map[uint64]time.Time),
	}
}

// add files f and returns the whole message when f completes its set; msg
// is non-nil exactly then, even for an empty message.
func (r *reassembler) add(now time.Time, f Fragment, o origin) (msg []byte, err error) {
	if _, ok := r.done[f.SetID]; ok {
		r.duplicates++
		return nil, errDuplicateFragment
	}
	if int(f.Count) > r.maxFragments {
		return nil, fmt.Errorf("%w: %d fragments, limit %d", errSetTooLarge, f.Count, r.maxFragments)
	}
	if f.Count == 1 {
		r.remember(f.SetID, now)
		return append([]byte{}, f.Data...), nil // not nil: nil means "not yet"
	}
	s := r.sets[f.SetID]
	if s == nil {
		s = &partialSet{origin: o, count: f.Count, parts: make(map[uint16][]byte)}
		r.sets[f.SetID] = s
	}
	if s.count != f.Count || s.origin != o {
		return nil, errFragmentMismatch
	}
	if _, dup := s.parts[f.Index]; dup {
		r.duplicates++
		return nil, errDuplicateFragment
	}
	data := append([]byte(nil), f.Data...)
	s.parts[f.Index] = data
	s.size += len(data)
	s.last = now
	r.bytes += len(data)
	if len(s.parts) < int(s.count) {
		r.evictOverLimit(f.SetID)
		return nil, nil
	}
	msg = make([]byte, 0, s.size)
	for i := range s.count {
		msg = append(msg, s.parts[i]...)
	}
	r.drop(f.SetID)
	r.remember(f.SetID, now)
	return msg, nil
}

func (r *reassembler) remember(id uint64, now time.Time) {
	if r.timeout > 0 {
		r.done[id] = now
	}
}

func (r *reassembler) drop(id uint64) {
	if s, ok := r.sets[id]; ok {
		r.bytes -= s.size
		delete(r.sets, id)
	}
}

// evictOverLimit drops the least recently fed sets, other than keep, until
// the partial sets fit in maxBytes. The scan is linear, but it runs only when
// the limit is hit, which an honest load never does.
func (r *reassembler) evictOverLimit(keep uint64) {
	for r.bytes > r.maxBytes && len(r.sets) > 1 {
		var oldest uint64
		var oldestAt time.Time
		found := false
		for id, s := range r.sets {
			if id != keep && (!found || s.last.Before(oldestAt)) {
				oldest, oldestAt, found = id, s.last, true
			}
		}
		r.drop(oldest)
		r.evicted++
	}
}

// expire drops sets that have received nothing for the timeout, and forgets
// completed sets as old.
func (r *reassembler) expire(now time.Time) {
	for id, s := range r.sets {
		if now.Sub(s.last) > r.timeout {
			r.drop(id)
			r.expired++
		}
	}
	for id, at := range r.done {
		if now.Sub(at) > r.timeout {
			delete(r.done, id)
		}
	}
}
