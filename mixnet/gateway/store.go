package gateway

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/nym-go/nym/mixnet/sphinx"
)

// dbFileName is the gateway's database inside Config.DataDir.
const dbFileName = "gateway.db"

// Database layout:
//
//	clients/                    one nested bucket per client that ever connected
//	  <client address, 32 B>/
//	    meta                    clientMeta
//	    msgs/                   stored deliveries, in arrival order
//	      <seq u64 BE>          record
var (
	bucketClients = []byte("clients")
	bucketMsgs    = []byte("msgs")
	keyMeta       = []byte("meta")
)

// errCorrupt is wrapped by every decoding error of stored values.
var errCorrupt = errors.New("gateway: corrupt stored value")

// A record is one stored delivery:
//
//	version u8 (1) ‖ stored at (Unix ns) i64 BE ‖ id [16] ‖ payload
const (
	recordVersion   = 1
	recordHeaderLen = 1 + 8 + sphinx.IDSize
)

func encodeRecord(storedAt int64, id [sphinx.IDSize]byte, payload []byte) []byte {
	b := make([]byte, 0, recordHeaderLen+len(payload))
	b = append(b, recordVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(storedAt))
	b = append(b, id[:]...)
	return append(b, payload...)
}

// decodeRecord splits a stored record; payload aliases b.
func decodeRecord(b []byte) (storedAt int64, id [sphinx.IDSize]byte, payload []byte, err error) {
	if len(b) < recordHeaderLen || b[0] != recordVersion {
		return 0, id, nil, fmt.Errorf("%w: record of %d bytes", errCorrupt, len(b))
	}
	storedAt = int64(binary.BigEndian.Uint64(b[1:]))
	copy(id[:], b[9:recordHeaderLen])
	return storedAt, id, b[recordHeaderLen:], nil
}

// clientMeta is what the gateway keeps about a client besides its messages:
//
//	version u8 (1) ‖ reserved u64 BE ‖ dropped u64 BE
//
// Reserved is above every Seq ever given to the client, so after a restart
// numbering resumes there and never repeats. Dropped counts deliveries refused
// for lack of room that the client has not been told about yet.
type clientMeta struct {
	Reserved uint64
	Dropped  uint64
}

const (
	metaVersion = 1
	metaLen     = 1 + 8 + 8
)

func (m clientMeta) encode() []byte {
	b := make([]byte, 0, metaLen)
	b = append(b, metaVersion)
	b = binary.BigEndian.AppendUint64(b, m.Reserved)
	return binary.BigEndian.AppendUint64(b, m.Dropped)
}

func decodeMeta(b []byte) (clientMeta, error) {
	if len(b) != metaLen || b[0] != metaVersion {
		return clientMeta{}, fmt.Errorf("%w: meta of %d bytes", errCorrupt, len(b))
	}
	return clientMeta{
		Reserved: binary.BigEndian.Uint64(b[1:]),
		Dropped:  binary.BigEndian.Uint64(b[9:]),
	}, nil
}

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// store is the bbolt file. All writes go through the gateway's writer
// goroutine (writer.go); reads may come from anywhere.
type store struct {
	db *bolt.DB
}

func openStore(dir string) (*store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("gateway: data dir: %w", err)
	}
	path := filepath.Join(dir, dbFileName)
	// A timeout, so a second gateway on the same directory fails instead of
	// waiting forever for the file lock.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("gateway: open %s: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketClients)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("gateway: init %s: %w", path, err)
	}
	return &store{db: db}, nil
}

func (s *store) close() error { return s.db.Close() }

// storedSummary is what loading learns about one client.
type storedSummary struct {
	addr    [sphinx.AddressSize]byte
	meta    clientMeta
	count   int
	bytes   int64
	highSeq uint64
}

// load reports every client in the database. A client whose meta is
// unreadable is still loaded: its numbering resumes above its stored
// messages, which is all the meta would have guaranteed.
func (s *store) load(fn func(storedSummary)) error {
	return s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketClients).ForEachBucket(func(k []byte) error {
			if len(k) != sphinx.AddressSize {
				return nil // not ours; ignore rather than refuse to start
			}
			b := tx.Bucket(bucketClients).Bucket(k)
			sum := storedSummary{}
			copy(sum.addr[:], k)
			sum.meta, _ = decodeMeta(b.Get(keyMeta))
			if msgs := b.Bucket(bucketMsgs); msgs != nil {
				c := msgs.Cursor()
				for k, v := c.First(); k != nil; k, v = c.Next() {
					sum.count++
					sum.bytes += int64(len(v))
					if len(k) == 8 {
						sum.highSeq = max(sum.highSeq, binary.BigEndian.Uint64(k))
					}
				}
			}
			fn(sum)
			return nil
		})
	})
}

// storedMessage is a record read back for delivery.
type storedMessage struct {
	seq      uint64
	storedAt int64
	id       [sphinx.IDSize]byte
	payload  []byte // a copy: bbolt's memory is valid only inside the transaction
	corrupt  bool
}

// readAfter returns up to maxN of the client's stored messages with Seq
// above after, in order.
func (s *store) readAfter(addr [sphinx.AddressSize]byte, after uint64, maxN int) ([]storedMessage, error) {
	var out []storedMessage
	if after == ^uint64(0) || maxN <= 0 {
		return nil, nil
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		cb := tx.Bucket(bucketClients).Bucket(addr[:])
		if cb == nil {
			return nil
		}
		msgs := cb.Bucket(bucketMsgs)
		if msgs == nil {
			return nil
		}
		c := msgs.Cursor()
		for k, v := c.Seek(seqKey(after + 1)); k != nil && len(out) < maxN; k, v = c.Next() {
			if len(k) != 8 {
				continue
			}
			m := storedMessage{seq: binary.BigEndian.Uint64(k)}
			storedAt, id, payload, err := decodeRecord(v)
			if err != nil {
				m.corrupt = true
			} else {
				m.storedAt, m.id, m.payload = storedAt, id, append([]byte(nil), payload...)
			}
			out = append(out, m)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("gateway: read stored messages: %w", err)
	}
	return out, nil
}
