package gateway

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// spentFileName is the spent set's database inside Config.DataDir. It is a
// file of its own, apart from gateway.db, so that what the gateway keeps
// about tickets can be read (and audited) alone: serials and expiries, and
// nothing that names a client.
const spentFileName = "spent.db"

// Spent set layout:
//
//	spent/
//	  <serial, 32 B>   expiry i64 BE (Unix s) ‖ flags u8 (spentLocal, spentDouble, spentReported)
//	cursors/
//	  <authority URL>  u64 BE: where the next fetch of its spent list starts
var (
	bucketSpent   = []byte("spent")
	bucketCursors = []byte("cursors")
)

// Flags of a spent serial.
const (
	// spentLocal: a valid spend of this serial was shown here, accepted or
	// refused because spent elsewhere. Only such serials are reported.
	spentLocal = 1 << 0
	// spentDouble: the serial was spent at two gateways; counted once.
	spentDouble = 1 << 1
	// spentReported: every authority has our report of it.
	spentReported = 1 << 2
)

// spentValueLen is a spent record's size.
const spentValueLen = 8 + 1

// pruneSlack is how long a serial is kept past its ticket's expiry: the
// spend window and more than any clock skew the ticket check tolerates, so
// that a ticket cannot be spent again once its serial is gone.
const pruneSlack = time.Hour

// spentEntry is one serial the gateway knows to be spent.
type spentEntry struct {
	expiry int64 // Unix seconds
	flags  uint8
	// pending is a bit per authority (by index in Config.Authorities) that
	// has not yet taken our report of it. In memory only: after a restart a
	// local serial without spentReported is reported to every authority.
	pending uint64
	// holder is the client that paid with it, while the gateway may still
	// learn that it was spent elsewhere too and take back what is left of
	// its quota. In memory only, and dropped after holdFor: the disk never
	// links a serial to a client.
	holder   *client
	holdTill int64 // Unix ns
	// doubleVotes is a bit per authority whose list flags the serial
	// double. In memory only: it becomes spentDouble once threshold
	// authorities agree, so one lying authority cannot have the gateway
	// take quota back from honest clients.
	doubleVotes uint64
}

// spentSet is the gateway's durable record of spent serials, with an
// in-memory copy that answers every check.
type spentSet struct {
	db *bolt.DB
	mu sync.Mutex
	m  map[[32]byte]*spentEntry
}

func openSpent(dir string) (*spentSet, error) {
	db, err := bolt.Open(filepath.Join(dir, spentFileName), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("gateway: open spent set: %w", err)
	}
	s := &spentSet{db: db, m: make(map[[32]byte]*spentEntry)}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketSpent)
		if err != nil {
			return err
		}
		if _, err := tx.CreateBucketIfNotExists(bucketCursors); err != nil {
			return err
		}
		return b.ForEach(func(k, v []byte) error {
			if len(k) != 32 || len(v) != spentValueLen {
				return fmt.Errorf("%w: spent record of %d/%d bytes", errCorrupt, len(k), len(v))
			}
			s.m[[32]byte(k)] = &spentEntry{expiry: int64(binary.BigEndian.Uint64(v)), flags: v[8]}
			return nil
		})
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("gateway: load spent set: %w", err)
	}
	return s, nil
}

func (s *spentSet) close() error { return s.db.Close() }

func spentValue(e *spentEntry) []byte {
	v := binary.BigEndian.AppendUint64(make([]byte, 0, spentValueLen), uint64(e.expiry))
	return append(v, e.flags)
}

// putLocked writes the entries of serials to disk. s.mu is held: the write
// is short, and tickets come at most once per quota's worth of traffic.
func (s *spentSet) putLocked(serials ...[32]byte) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSpent)
		for _, sr := range serials {
			e := s.m[sr]
			if e == nil {
				continue
			}
			if err := b.Put(sr[:], spentValue(e)); err != nil {
				return err
			}
		}
		return nil
	})
}

// claimResult is what claim found.
type claimResult int

const (
	claimFresh     claimResult = iota // not spent before: now spent here
	claimSpentHere                    // shown here before
	claimElsewhere                    // spent at another gateway (or flagged double)
)

// claim records serial as spent here, durably, if it is not spent yet.
// holder is charged for it until holdTill. allAuthorities is the pending mask
// for its report. A serial spent elsewhere is recorded as shown here too, so
// that our report lets the gateway that accepted it count the double spend.
// newDouble reports whether this made it a double spend for the first time.
func (s *spentSet) claim(serial [32]byte, expiry int64, holder *client, holdTill int64, allAuthorities uint64) (res claimResult, newDouble bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.m[serial]
	switch {
	case e == nil:
		e = &spentEntry{expiry: expiry, flags: spentLocal, pending: allAuthorities, holder: holder, holdTill: holdTill}
		s.m[serial] = e
		if err := s.putLocked(serial); err != nil {
			delete(s.m, serial)
			return 0, false, fmt.Errorf("gateway: record spent ticket: %w", err)
		}
		return claimFresh, false, nil
	case e.flags&spentLocal != 0 && e.flags&spentDouble == 0:
		return claimSpentHere, false, nil
	}
	old := e.flags
	e.flags |= spentLocal | spentDouble
	if old&spentLocal == 0 {
		e.pending = allAuthorities
		e.flags &^= spentReported
	}
	if e.flags != old {
		if err := s.putLocked(serial); err != nil {
			return 0, false, fmt.Errorf("gateway: record double spend: %w", err)
		}
	}
	return claimElsewhere, old&spentDouble == 0, nil
}

// toReport returns up to limit serials authority i has not yet taken.
func (s *spentSet) toReport(i, limit int) [][32]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out [][32]byte
	for sr, e := range s.m {
		if e.pending&(1<<i) != 0 {
			if out = append(out, sr); len(out) == limit {
				break
			}
		}
	}
	return out
}

// reported clears authority i's bit for serials; those that every
// authority has now are marked so on disk.
func (s *spentSet) reported(i int, serials [][32]byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var done [][32]byte
	for _, sr := range serials {
		e := s.m[sr]
		if e == nil || e.pending&(1<<i) == 0 {
			continue
		}
		e.pending &^= 1 << i
		if e.pending == 0 {
			e.flags |= spentReported
			done = append(done, sr)
		}
	}
	if len(done) == 0 {
		return nil
	}
	return s.putLocked(done...)
}

// learned takes in serials from authority i's spent list. A serial any
// authority lists is spent (an authority cannot name a serial before a
// gateway reported it: issuance is blind); it is double once threshold
// authorities flag it so. It returns how many of those shown here became
// double spends, and the clients that paid with them (while still held), so
// the caller can count them and take back the rest of those tickets' quota.
func (s *spentSet) learned(list []learnedSerial, i, threshold int, now time.Time) (doubles int, holders []*client, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var changed [][32]byte
	for _, l := range list {
		e := s.m[l.serial]
		if e == nil {
			if now.Unix() > l.expiry+int64(pruneSlack/time.Second) {
				continue // expired already: nobody can spend it anyway
			}
			e = &spentEntry{expiry: l.expiry}
			s.m[l.serial] = e
			changed = append(changed, l.serial)
		}
		if !l.double || e.flags&spentDouble != 0 {
			continue
		}
		e.doubleVotes |= 1 << i
		if bits.OnesCount64(e.doubleVotes) >= threshold {
			e.flags |= spentDouble
			changed = append(changed, l.serial)
			if e.flags&spentLocal != 0 {
				doubles++
				if e.holder != nil {
					holders = append(holders, e.holder)
					e.holder = nil
				}
			}
		}
	}
	if len(changed) == 0 {
		return doubles, holders, nil
	}
	return doubles, holders, s.putLocked(changed...)
}

// learnedSerial is one entry of an authority's spent list.
type learnedSerial struct {
	serial [32]byte
	expiry int64
	double bool
}

// prune forgets serials whose tickets expired more than pruneSlack ago, and
// the holders of serials past their hold. It returns how many it deleted.
func (s *spentSet) prune(now time.Time) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cutoff := now.Add(-pruneSlack).Unix()
	var gone [][32]byte
	for sr, e := range s.m {
		if e.expiry < cutoff {
			gone = append(gone, sr)
		}
		if e.holder != nil && e.holdTill < now.UnixNano() {
			e.holder = nil
		}
	}
	if len(gone) == 0 {
		return 0, nil
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSpent)
		for _, sr := range gone {
			if err := b.Delete(sr[:]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("gateway: prune spent set: %w", err)
	}
	for _, sr := range gone {
		delete(s.m, sr)
	}
	return len(gone), nil
}

// restorePending marks every local serial not yet reported to all as
// pending for every authority: after a restart nobody knows who took what.
func (s *spentSet) restorePending(all uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.m {
		if e.flags&spentLocal != 0 && e.flags&spentReported == 0 {
			e.pending = all
		}
	}
}

// cursor and setCursor keep where the next fetch from an authority starts.
func (s *spentSet) cursor(url string) uint64 {
	var c uint64
	s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketCursors).Get([]byte(url)); len(v) == 8 {
			c = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	return c
}

func (s *spentSet) setCursor(url string, c uint64) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketCursors).Put([]byte(url), binary.BigEndian.AppendUint64(nil, c))
	})
}

// size is how many serials the set holds.
func (s *spentSet) size() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}
