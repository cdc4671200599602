package authority

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/ticket"
	bolt "go.etcd.io/bbolt"
)

// The ticket buckets of the state database.
//
// What an issuance leaves is one record in bucketVoucherUse: the voucher's
// hash, the hash of the request that used it, the ticket count and the
// time. Never a blinded message, a ticket key, a serial or a signature:
// TestTicketIssuance dumps the database and checks.
//
// Redemption keeps bucketSpent (serial → who reported it first, whether a
// second gateway did, its sequence number and when to forget it) and
// bucketSpentSeq (sequence number → serial), the order gateways page
// through.
var (
	bucketVoucherUse = []byte(IssuanceBucket)
	bucketSpent      = []byte("ticket_spent")
	bucketSpentSeq   = []byte("ticket_spent_seq")
)

// IssuanceBucket is the bucket of the state database (DatabaseFile) that
// holds everything the authority keeps about issuances: what an
// unlinkability test dumps (package mixnet/ticket/tickettest).
const IssuanceBucket = "ticket_voucher_use"

// errVoucherUsed means a voucher was used by another request.
var errVoucherUsed = errors.New("voucher already used")

// errVoucherAnswered means a voucher's request was answered as often as
// an authority answers one.
var errVoucherAnswered = errors.New("voucher's request answered too often")

// voucherUse is what an authority keeps of a redeemed voucher.
type voucherUse struct {
	// Request is the SHA-256 of the issuance request that used it: a retry
	// with the same blinded messages is answered again, any other refused.
	Request [32]byte  `json:"request"`
	Tickets int       `json:"tickets"`
	At      time.Time `json:"at"`
	// Answers counts the times the request was answered, retries
	// included: at most maxAnswers.
	Answers int `json:"answers"`
}

// spentRecord is what an authority keeps of a reported serial.
type spentRecord struct {
	Gateway directory.Key `json:"gateway"`
	Double  bool          `json:"double,omitempty"`
	Seq     uint64        `json:"seq"`
	Expiry  int64         `json:"expiry"`
}

func (s *store) initTicketBuckets() error {
	return s.db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketVoucherUse, bucketSpent, bucketSpentSeq} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
}

// useVoucher records that voucher id is used by the request whose hash is
// req, unless it was used by another request (errVoucherUsed) or this one
// was answered maxAnswers times (errVoucherAnswered). first reports
// whether this is the voucher's first use; fresh is asked only then, and
// its error refuses the request without recording anything.
func (s *store) useVoucher(id, req [32]byte, tickets, maxAnswers int, now time.Time, fresh func() error) (first bool, err error) {
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketVoucherUse)
		u := voucherUse{Request: req, Tickets: tickets, At: now.UTC().Round(time.Second)}
		if data := b.Get(id[:]); data != nil {
			if err := json.Unmarshal(data, &u); err != nil {
				return fmt.Errorf("voucher record: %w", err)
			}
			if u.Request != req {
				return fmt.Errorf("%w at %s by other requests: a voucher buys one ticketbook", errVoucherUsed, u.At.UTC().Format(time.RFC3339))
			}
			if u.Answers >= maxAnswers {
				return fmt.Errorf("%w: %d times since %s", errVoucherAnswered, u.Answers, u.At.UTC().Format(time.RFC3339))
			}
		} else {
			if err := fresh(); err != nil {
				return err
			}
			first = true
		}
		u.Answers++
		data, err := json.Marshal(u)
		if err != nil {
			return err
		}
		return b.Put(id[:], data)
	})
	return first, err
}

// voucherUsed reports whether voucher id was used here.
func (s *store) voucherUsed(id [32]byte) (bool, error) {
	used := false
	err := s.db.View(func(tx *bolt.Tx) error {
		used = tx.Bucket(bucketVoucherUse).Get(id[:]) != nil
		return nil
	})
	return used, err
}

// reportSpent records serials reported by gateway at now. A serial another
// gateway reported before becomes Double and gets a new sequence number,
// so that gateways paging from their cursor see the change. It returns how
// many serials were new and how many became double spends.
func (s *store) reportSpent(gateway directory.Key, serials [][32]byte, now time.Time) (fresh, doubles int, err error) {
	err = s.db.Update(func(tx *bolt.Tx) error {
		spent, seqs := tx.Bucket(bucketSpent), tx.Bucket(bucketSpentSeq)
		for _, serial := range serials {
			var rec spentRecord
			if data := spent.Get(serial[:]); data != nil {
				if err := json.Unmarshal(data, &rec); err != nil {
					return fmt.Errorf("spent record: %w", err)
				}
				if rec.Double || rec.Gateway == gateway {
					continue // known, nothing new
				}
				if err := seqs.Delete(seqKey(rec.Seq)); err != nil {
					return err
				}
				rec.Double = true
				doubles++
			} else {
				rec = spentRecord{Gateway: gateway, Expiry: now.Add(ticket.MaxLifetime).Unix()}
				fresh++
			}
			seq, err := seqs.NextSequence()
			if err != nil {
				return err
			}
			rec.Seq = seq
			data, err := json.Marshal(rec)
			if err != nil {
				return err
			}
			if err := spent.Put(serial[:], data); err != nil {
				return err
			}
			if err := seqs.Put(seqKey(seq), serial[:]); err != nil {
				return err
			}
		}
		return nil
	})
	return fresh, doubles, err
}

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// spentSince lists up to limit serials with sequence numbers after since.
// A cursor beyond any number given (the authority lost its database and
// counts afresh) gets Next = 0, so the gateway starts over.
func (s *store) spentSince(since uint64, limit int) (ticket.SpentList, error) {
	l := ticket.SpentList{Next: since}
	err := s.db.View(func(tx *bolt.Tx) error {
		spent, seqs := tx.Bucket(bucketSpent), tx.Bucket(bucketSpentSeq)
		if since > seqs.Sequence() {
			l.Next = 0
			return nil
		}
		c := seqs.Cursor()
		for k, serial := c.Seek(seqKey(since + 1)); k != nil && len(l.Spent) < limit; k, serial = c.Next() {
			var rec spentRecord
			data := spent.Get(serial)
			if len(k) != 8 || len(serial) != 32 || data == nil || json.Unmarshal(data, &rec) != nil {
				continue // damaged: skip rather than stop every gateway's sync
			}
			l.Spent = append(l.Spent, ticket.SpentSerial{Serial: [32]byte(serial), Expiry: rec.Expiry, Double: rec.Double})
			l.Next = binary.BigEndian.Uint64(k)
		}
		return nil
	})
	return l, err
}

// pruneSpent forgets the serials whose tickets have expired by now, and
// returns how many.
func (s *store) pruneSpent(now time.Time) (int, error) {
	pruned := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		spent, seqs := tx.Bucket(bucketSpent), tx.Bucket(bucketSpentSeq)
		var gone [][]byte
		err := spent.ForEach(func(k, data []byte) error {
			var rec spentRecord
			if json.Unmarshal(data, &rec) != nil || rec.Expiry <= now.Unix() {
				gone = append(gone, bytes.Clone(k))
				if rec.Seq != 0 {
					return seqs.Delete(seqKey(rec.Seq))
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range gone {
			if err := spent.Delete(k); err != nil {
				return err
			}
		}
		pruned = len(gone)
		return nil
	})
	return pruned, err
}
