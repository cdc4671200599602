package client

import (
	"sync"
	"time"

	"github.com/nym-go/nym/mixnet/sphinx"
)

// replyKeyStore is the sending side of reply SURBs: the keys that open what
// comes back through each SURB we handed out, and our sender tag for each
// address we gave SURBs to. Keys are used once and expire after maxAge;
// when more than maxKeys are held the oldest go first.
type replyKeyStore struct {
	maxAge  time.Duration
	maxKeys int

	mu    sync.Mutex
	keys  map[[sphinx.IDSize]byte]replyKeyEntry
	order []replyKeyRef // oldest first; may name keys already used
	tags  map[Address]AnonymousSenderTag
	addrs map[AnonymousSenderTag]Address
}

type replyKeyEntry struct {
	keys sphinx.ReplyKeys
	tag  AnonymousSenderTag
}

type replyKeyRef struct {
	id [sphinx.IDSize]byte
	at time.Time
}

func newReplyKeyStore(maxAge time.Duration, maxKeys int) *replyKeyStore {
	return &replyKeyStore{
		maxAge:  maxAge,
		maxKeys: maxKeys,
		keys:    make(map[[sphinx.IDSize]byte]replyKeyEntry),
		tags:    make(map[Address]AnonymousSenderTag),
		addrs:   make(map[AnonymousSenderTag]Address),
	}
}

// tagFor returns our sender tag towards to, making one on first use. One tag
// per recipient: the recipient can tell our messages apart from others' (it
// must, to reply), but two recipients cannot link us by the tag.
func (s *replyKeyStore) tagFor(to Address) AnonymousSenderTag {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.tags[to]; ok {
		return t
	}
	t := newSenderTag()
	s.tags[to] = t
	s.addrs[t] = to
	return t
}

// addressOf returns the address we use tag with.
func (s *replyKeyStore) addressOf(tag AnonymousSenderTag) (Address, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.addrs[tag]
	return a, ok
}

// put remembers the keys of one SURB handed out under tag.
func (s *replyKeyStore) put(id [sphinx.IDSize]byte, keys sphinx.ReplyKeys, tag AnonymousSenderTag, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys[id] = replyKeyEntry{keys: keys, tag: tag}
	s.order = append(s.order, replyKeyRef{id: id, at: now})
	s.trim(now)
}

// take returns and forgets the keys for id.
func (s *replyKeyStore) take(id [sphinx.IDSize]byte) (sphinx.ReplyKeys, AnonymousSenderTag, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.keys[id]
	if ok {
		delete(s.keys, id)
	}
	return e.keys, e.tag, ok
}

func (s *replyKeyStore) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.keys)
}

func (s *replyKeyStore) expire(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.trim(now)
}

// trim drops keys past maxAge or beyond maxKeys. Called with mu held.
func (s *replyKeyStore) trim(now time.Time) {
	i := 0
	for i < len(s.order) {
		r := s.order[i]
		if _, live := s.keys[r.id]; live && now.Sub(r.at) <= s.maxAge && len(s.keys) <= s.maxKeys {
			break
		}
		delete(s.keys, r.id)
		i++
	}
	if i > 0 {
		s.order = append(s.order[:0], s.order[i:]...)
	}
	// Used keys leave holes in order; compact when they dominate, so order
	// stays proportional to the live keys.
	if len(s.order) > 2*len(s.keys)+1024 {
		live := s.order[:0]
		for _, r := range s.order {
			if _, ok := s.keys[r.id]; ok {
				live = append(live, r)
			}
		}
		s.order = live
	}
}
