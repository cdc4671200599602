package router

import (
	"encoding/hex"
	"net/netip"
	"sync"
	"time"

	"github.com/nym-go/nym/codel"
	"github.com/nym-go/nym/ipr"
)

// SessionKey names an anonymous client: the sender tag its requests arrive
// with, which is also how replies find their way back (through the SURBs the
// client left under that tag).
type SessionKey [16]byte

// String returns a short form for logs.
func (k SessionKey) String() string { return hex.EncodeToString(k[:4]) }

// session is one connected client.
type session struct {
	mu sync.Mutex

	// key changes when a new sender tag takes the session over; it is
	// written with both Router.mu and mu held, so either suffices to read.
	key   SessionKey
	nonce [ipr.NonceSize]byte
	addrs ipr.AddrPair

	lastSeen time.Time                // last request; guarded by mu
	up       *ipr.Resequencer[[]byte] // upstream bundles; nil when resequencing is off
	down     *codel.FQ                // downstream IP packets
	downSeq  uint64                   // sequence number of the next downstream Data
	enc      ipr.BundleEncoder        // reused by every Pull
	batch    [][]byte                 // reused for the packets each upstream bundle releases
	closed   bool                     // ended; whoever still holds it must let go
	lastInfo time.Time                // last policy Info sent, to spare the client's SURBs

	// stream carries the downstream under key; nil until opened, and
	// after the session ended or moved.
	stream      Stream
	lowSURBs    bool      // the stream starved: the next pull tells the client
	lastLowInfo time.Time // last low-SURB Info sent
	// replyInterval is the pace the client's downstream takes replies
	// at, as its last Connect announced it (bounded: replyIntervalOf);
	// zero when it did not.
	replyInterval time.Duration
}

// ownsSource reports whether src is one of the session's addresses.
func (s *session) ownsSource(src netip.Addr) bool {
	return src == s.addrs.V4 || src == s.addrs.V6
}

// backlog estimates how many more full bundles the queue holds.
func (s *session) backlog(bundleCap int) uint16 {
	need := s.down.Bytes() + ipr.LengthPrefixSize*s.down.Len()
	n := (need + bundleCap - 1) / bundleCap
	return uint16(min(n, 1<<16-1))
}
