package router

import (
	"time"

	"github.com/nym-go/nym/ipr"
)

// Stream is the transport's stream that carries one session's downstream
// Data under one sender tag: for the exit, a mixnet reply stream, which
// pulls one response whenever it holds a SURB for the tag. The router wakes
// it when the session's queue stops being empty and closes it when the
// session ends or moves to another sender tag.
type Stream interface {
	// Wake says the session has data (again). It must not block.
	Wake()
	// Close ends the stream; the router calls it once.
	Close() error
}

// Downstream is what a session's Stream pulls from: the session's queue as
// it stands under one sender tag. Config.OpenStream hands it out.
type Downstream struct {
	r   *Router
	s   *session
	key SessionKey
}

// Key is the sender tag the stream replies to.
func (d Downstream) Key() SessionKey { return d.key }

// ReplyInterval is the pace at which the client said its downstream takes
// the session's replies (ipr.Connect.ReplyInterval), within
// [MinReplyInterval, MaxReplyInterval]; zero when it did not say. The
// stream should pull no faster: under load each Pull then packs what the
// interval gathered, and the queue stands here, under CoDel.
func (d Downstream) ReplyInterval() time.Duration {
	d.s.mu.Lock()
	defer d.s.mu.Unlock()
	return d.s.replyInterval
}

// The bounds of the reply pace a router grants. Below a millisecond the
// pace would hardly differ from none (a reply as soon as a SURB is in
// hand, which a client gets by not asking) and costs a timer per reply;
// above a second the session's every queued packet would age out in
// CoDel between two replies.
const (
	MinReplyInterval = time.Millisecond
	MaxReplyInterval = time.Second
)

// replyIntervalOf bounds a Connect's announced pace; zero stays zero.
func replyIntervalOf(c *ipr.Connect) time.Duration {
	if c.ReplyInterval <= 0 {
		return 0
	}
	return min(max(c.ReplyInterval, MinReplyInterval), MaxReplyInterval)
}

// Pull appends the session's next downstream response to dst, within
// cap(dst), and reports false when there is nothing to send. The response is
// a Data message packed with as many queued packets as fit, so bundles leave
// full under load and small when the link is quiet, without a flush timer;
// or, first after the session went short of SURBs (Starved), an Info that
// tells the client to send more. The stream calls it when it can send one
// response now, so a bundle leaves the queue only with a SURB in hand:
// nothing waits outside the queue's CoDel. It does not block.
func (d Downstream) Pull(dst []byte) ([]byte, bool) {
	r, s := d.r, d.s
	now := r.cfg.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.key != d.key {
		return dst, false
	}
	if s.lowSURBs {
		s.lowSURBs = false
		if now.Sub(s.lastLowInfo) >= r.cfg.InfoInterval {
			if b, err := (&ipr.Info{Code: ipr.InfoLowSURBs}).AppendBinary(dst); err == nil && len(b) <= cap(dst) {
				s.lastLowInfo = now
				r.stats.lowSURBInfos.Add(1)
				return b, true
			}
		}
	}
	if s.down.Len() == 0 {
		return dst, false
	}
	if cap(dst)-len(dst) < ipr.DataDownOverhead {
		return dst, false // no transport offers this little; nothing fits
	}
	// The bundle goes behind the header straight into the transport's
	// buffer, up to its capacity.
	enc := &s.enc
	enc.ResetInPlace(append(dst, make([]byte, ipr.DataDownOverhead)...))
	sojourn := s.down.Stats().Sojourn
	var bytes int
	for {
		// CoDel drops at the head what waited too long, then the head
		// goes into the bundle if it fits; if not, it opens the next.
		if p, _, ok := s.down.PopIf(now, enc.Fits); ok {
			if err := enc.Add(p); err != nil { // Fits said yes: only an empty packet, which FromTUN lets in never
				r.stats.drop(DropMalformed, 1)
			} else {
				bytes += len(p)
			}
			r.bufs.put(p) // copied into the bundle
			continue
		}
		if enc.Packets() > 0 || s.down.Len() == 0 {
			break
		}
		// The head fits no bundle this transport takes: drop it rather
		// than leave the stream asleep on a queue that never empties.
		if p, _, ok := s.down.PopIf(now, func(n int) bool { return !enc.Fits(n) }); ok {
			r.stats.drop(DropTooBig, 1)
			r.bufs.put(p)
		}
	}
	r.stats.drop(DropSojourn, int(s.down.Stats().Sojourn-sojourn))
	if enc.Packets() == 0 {
		return dst, false // CoDel dropped all there was
	}
	msg := enc.Bytes()
	ipr.PutDataDownHeader(msg[len(dst):], s.downSeq, s.backlog(r.bundleCap))
	s.downSeq++
	r.stats.bundlesDown.Add(1)
	r.stats.packetsDown.Add(uint64(enc.Packets()))
	r.stats.bytesDown.Add(uint64(bytes))
	return msg, true
}

// Starved tells the router that the stream has data to send but no SURB to
// send it with (the transport has asked the client for more). The session's
// packets stay in its queue, where CoDel ages them out; the next response
// the stream pulls is an Info telling the client to send more SURBs, at most
// one per InfoInterval. It does not block.
func (d Downstream) Starved() {
	d.r.stats.starved.Add(1)
	d.s.mu.Lock()
	if !d.s.closed && d.s.key == d.key {
		d.s.lowSURBs = true
	}
	d.s.mu.Unlock()
}

// openStream opens the stream of session s under sender tag key, unless the
// session ended or moved on meanwhile. Called without locks held: the
// transport may take its own.
func (r *Router) openStream(s *session, key SessionKey) {
	if r.cfg.OpenStream == nil {
		return
	}
	st, err := r.cfg.OpenStream(key, Downstream{r: r, s: s, key: key})
	if err != nil {
		r.stats.streamsFailed.Add(1)
		return
	}
	s.mu.Lock()
	if s.closed || s.key != key || s.stream != nil {
		s.mu.Unlock()
		st.Close()
		return
	}
	s.stream = st
	s.mu.Unlock()
	st.Wake() // packets may have come before the stream
}

// closeStreams closes streams taken from sessions, without locks held.
func closeStreams(sts []Stream) {
	for _, st := range sts {
		if st != nil {
			st.Close()
		}
	}
}

// takeStream detaches the session's stream, to be closed once the locks are
// released. s.mu is held.
func (s *session) takeStream() Stream {
	st := s.stream
	s.stream = nil
	return st
}
