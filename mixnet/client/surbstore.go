package client

import (
	"errors"
	"sync"
	"time"
)

// ErrNoSURBs is returned by Reply when we hold no SURBs for the tag and
// cannot ask for more.
var ErrNoSURBs = errors.New("client: no reply SURBs for this sender")

// surbStore keeps the reply SURBs senders gave us, per sender tag, oldest
// first: SURBs age out when the nodes on their route rotate keys, so the old
// ones are spent first.
type surbStore struct {
	policy SURBPolicy

	mu      sync.Mutex
	senders map[AnonymousSenderTag]*senderSURBs
	held    int
}

type senderSURBs struct {
	surbs       []heldSURB
	lastUsed    time.Time
	lastRequest time.Time
	// more is closed, and replaced, when SURBs are added, waking Replies
	// that wait for them.
	more chan struct{}
}

type heldSURB struct {
	s  replySURB
	at time.Time
}

func newSURBStore(p SURBPolicy) *surbStore {
	return &surbStore{policy: p, senders: make(map[AnonymousSenderTag]*senderSURBs)}
}

// sender returns tag's entry, making it (and evicting the least recently used
// sender when there are too many) when missing. Called with mu held.
func (s *surbStore) sender(tag AnonymousSenderTag, now time.Time) *senderSURBs {
	e := s.senders[tag]
	if e != nil {
		return e
	}
	if len(s.senders) >= s.policy.MaxSenders {
		var oldest AnonymousSenderTag
		var at time.Time
		first := true
		for t, o := range s.senders {
			if first || o.lastUsed.Before(at) {
				oldest, at, first = t, o.lastUsed, false
			}
		}
		s.held -= len(s.senders[oldest].surbs)
		close(s.senders[oldest].more)
		delete(s.senders, oldest)
	}
	e = &senderSURBs{lastUsed: now, more: make(chan struct{})}
	s.senders[tag] = e
	return e
}

// add stores SURBs from tag, dropping the oldest beyond MaxPerSender.
// answer says they came in answer to our request (kindMoreSURBs): only that
// lets us ask again before RequestRetry. SURBs riding on the sender's own
// messages do not answer a request; were they to re-arm it, a sender that
// tops up its supply with every packet (the VPN) would draw one request,
// and one grant in reliable fragments, per reply.
func (s *surbStore) add(tag AnonymousSenderTag, surbs []replySURB, answer bool, now time.Time) {
	if len(surbs) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.sender(tag, now)
	e.lastUsed = now
	for _, r := range surbs {
		e.surbs = append(e.surbs, heldSURB{s: r, at: now})
	}
	s.held += len(surbs)
	if over := len(e.surbs) - s.policy.MaxPerSender; over > 0 {
		e.surbs = append(e.surbs[:0], e.surbs[over:]...)
		s.held -= over
	}
	if answer {
		e.lastRequest = time.Time{}
	}
	close(e.more)
	e.more = make(chan struct{})
}

// replyPlan is what takeForReply decided.
type replyPlan struct {
	surbs   []replySURB   // n SURBs to send the reply with, or nil
	request *replySURB    // a SURB to ask for more with, or nil
	want    int           // how many to ask for
	wait    chan struct{} // when surbs is nil: closed when more arrive
}

// takeForReply takes n SURBs for a reply to tag, and one more to ask the
// sender for a fresh supply when the reply leaves too few. With fewer than n
// it takes none, asks for more when it can, and says what to wait on.
func (s *surbStore) takeForReply(tag AnonymousSenderTag, n int, now time.Time) (replyPlan, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.use(tag, now)
	if e == nil {
		return replyPlan{}, ErrNoSURBs
	}
	var plan replyPlan
	canAsk := e.lastRequest.IsZero() || now.Sub(e.lastRequest) >= s.policy.RequestRetry
	if len(e.surbs) >= n {
		plan.surbs = s.pop(e, n)
		if left := len(e.surbs); left > 0 && left < s.policy.LowWater && canAsk {
			plan.request = &s.pop(e, 1)[0]
			plan.want = s.policy.Request
			e.lastRequest = now
		}
		return plan, nil
	}
	switch {
	case len(e.surbs) > 0 && canAsk:
		plan.request = &s.pop(e, 1)[0]
		plan.want = max(s.policy.Request, n+s.policy.LowWater-len(e.surbs))
		e.lastRequest = now
	case len(e.surbs) == 0 && canAsk:
		// Nothing to ask with, and no request of ours is outstanding.
		return replyPlan{}, ErrNoSURBs
	}
	plan.wait = e.more
	return plan, nil
}

// use returns tag's entry, nil when unknown, marked used now and without
// SURBs past MaxAge. Called with mu held.
func (s *surbStore) use(tag AnonymousSenderTag, now time.Time) *senderSURBs {
	e := s.senders[tag]
	if e != nil {
		e.lastUsed = now
		s.dropOld(e, now)
	}
	return e
}

// pop takes the n oldest SURBs. Called with mu held.
func (s *surbStore) pop(e *senderSURBs, n int) []replySURB {
	out := make([]replySURB, n)
	for i := range out {
		out[i] = e.surbs[i].s
	}
	e.surbs = append(e.surbs[:0], e.surbs[n:]...)
	s.held -= n
	return out
}

// dropOld removes SURBs older than MaxAge. Called with mu held.
func (s *surbStore) dropOld(e *senderSURBs, now time.Time) {
	i := 0
	for i < len(e.surbs) && now.Sub(e.surbs[i].at) > s.policy.MaxAge {
		i++
	}
	if i > 0 {
		e.surbs = append(e.surbs[:0], e.surbs[i:]...)
		s.held -= i
	}
}

// count returns the SURBs held for tag.
func (s *surbStore) count(tag AnonymousSenderTag) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.senders[tag]; e != nil {
		return len(e.surbs)
	}
	return 0
}

// total returns the SURBs held for all senders.
func (s *surbStore) total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held
}

// expire drops old SURBs, and senders that have none left and were not heard
// from for MaxAge.
// dropParity removes every SURB built for the key rotation parity given,
// and returns how many went. Called once the previous rotation's overlap
// is over: the mixes have deleted those keys, so a reply through such a
// SURB would be refused at its first hop and lost, while the caller (the
// exit) believed it had sent it.
func (s *surbStore) dropParity(parity uint8) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	dropped := 0
	for _, e := range s.senders {
		kept := e.surbs[:0]
		for _, h := range e.surbs {
			if h.s.parity == parity {
				dropped++
				continue
			}
			kept = append(kept, h)
		}
		clear(e.surbs[len(kept):])
		e.surbs = kept
	}
	s.held -= dropped
	return dropped
}

func (s *surbStore) expire(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for tag, e := range s.senders {
		s.dropOld(e, now)
		if len(e.surbs) == 0 && now.Sub(e.lastUsed) > s.policy.MaxAge {
			close(e.more)
			delete(s.senders, tag)
		}
	}
}

// takeOne takes the oldest SURB for a reply stream's next packet; false
// when there is none.
func (s *surbStore) takeOne(tag AnonymousSenderTag, now time.Time) (heldSURB, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.use(tag, now)
	if e == nil || len(e.surbs) == 0 {
		return heldSURB{}, false
	}
	h := e.surbs[0]
	e.surbs = append(e.surbs[:0], e.surbs[1:]...)
	s.held--
	return h, true
}

// unshift puts back a SURB takeOne took and did not spend (the source had
// nothing to send), first in line again, with its age.
func (s *surbStore) unshift(tag AnonymousSenderTag, h heldSURB) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.sender(tag, h.at)
	e.surbs = append(e.surbs, heldSURB{})
	copy(e.surbs[1:], e.surbs)
	e.surbs[0] = h
	s.held++
	if over := len(e.surbs) - s.policy.MaxPerSender; over > 0 {
		e.surbs = append(e.surbs[:0], e.surbs[over:]...)
		s.held -= over
	}
}

// requestIfLow is takeForReply's rule for asking, after a reply stream
// spent a SURB: when fewer than LowWater are left (but one to ask with), and
// no request of ours is recent, it takes one SURB to ask through.
func (s *surbStore) requestIfLow(tag AnonymousSenderTag, now time.Time) (*replySURB, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.senders[tag]
	if e == nil {
		return nil, 0
	}
	canAsk := e.lastRequest.IsZero() || now.Sub(e.lastRequest) >= s.policy.RequestRetry
	if left := len(e.surbs); left == 0 || left >= s.policy.LowWater || !canAsk {
		return nil, 0
	}
	e.lastRequest = now
	return &s.pop(e, 1)[0], s.policy.Request
}
