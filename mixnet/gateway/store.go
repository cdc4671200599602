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
//	clients/                    one nested bucket per recorded client (see
//	                            Config.ClientRetention and MaxStoredClients)
//	  <client address, 32 B>/
//	    meta                    clientMeta
//	    provisional             present (empty) while the client has not
//	                            yet shown life (Config.RecordClientsAfter)
//	    msgs/                   stored deliveries, in arrival order
//	      <seq u64 BE>          record
//	state/
//	  seq_floor                 see keySeqFloor
var (
	bucketClients  = []byte("clients")
	bucketMsgs     = []byte("msgs")
	keyMeta        = []byte("meta")
	keyProvisional = []byte("provisional")
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
//	version u8 (2) ‖ reserved u64 BE ‖ dropped u64 BE ‖ last seen i64 BE (Unix ns)
//
// Version 1 is the same without last seen; it still loads, with LastSeen 0.
//
// Reserved is above every Seq ever given to the client, so after a restart
// numbering resumes there and never repeats: a repeated Seq would overwrite
// a stored record under the same key, and a drain that has sent up to Seq n
// would skip a new record numbered below n. Dropped counts deliveries
// refused for lack of room that the client has not been told about yet.
// LastSeen is when the client last connected, disconnected or had a
// delivery stored; the retention sweep forgets idle clients by it. 0 means
// unknown (a version 1 record), which loading treats as "now" so an upgrade
// forgets nobody early.
type clientMeta struct {
	Reserved uint64
	Dropped  uint64
	LastSeen int64
}

const (
	metaVersion  = 2
	metaLen      = 1 + 8 + 8 + 8
	metaVersion1 = 1
	metaLenV1    = 1 + 8 + 8
)

// AppendBinary appends the version 2 encoding of m to b. It never fails.
func (m clientMeta) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, metaVersion)
	b = binary.BigEndian.AppendUint64(b, m.Reserved)
	b = binary.BigEndian.AppendUint64(b, m.Dropped)
	return binary.BigEndian.AppendUint64(b, uint64(m.LastSeen)), nil
}

// value is m's encoding as a database value.
func (m clientMeta) value() []byte {
	b, _ := m.AppendBinary(make([]byte, 0, metaLen))
	return b
}

// UnmarshalBinary reads a version 2 or version 1 meta. It checks the length
// against the version before reading, so damaged bytes give an error, never
// a panic; m is then left as it was.
func (m *clientMeta) UnmarshalBinary(b []byte) error {
	switch {
	case len(b) == metaLen && b[0] == metaVersion:
		*m = clientMeta{
			Reserved: binary.BigEndian.Uint64(b[1:]),
			Dropped:  binary.BigEndian.Uint64(b[9:]),
			LastSeen: int64(binary.BigEndian.Uint64(b[17:])),
		}
		return nil
	case len(b) == metaLenV1 && b[0] == metaVersion1:
		*m = clientMeta{
			Reserved: binary.BigEndian.Uint64(b[1:]),
			Dropped:  binary.BigEndian.Uint64(b[9:]),
			// LastSeen 0: unknown.
		}
		return nil
	}
	return fmt.Errorf("%w: meta of %d bytes", errCorrupt, len(b))
}

// The sequence floor is the gateway-wide tombstone of forgotten clients:
//
//	state/seq_floor   u64 BE
//
// It is at least the next Seq of every client record ever deleted, and a
// client the gateway does not know starts numbering there. A client that is
// forgotten and comes back therefore never sees a Seq again, without the
// gateway keeping anything per forgotten identity. It costs nothing but
// larger numbers: the floor grows by the deliveries to forgotten clients,
// which a u64 does not run out of.
var (
	bucketState = []byte("state")
	keySeqFloor = []byte("seq_floor")
)

func decodeSeqFloor(b []byte) (uint64, error) {
	if b == nil {
		return 0, nil // a database from before there was a floor
	}
	if len(b) != 8 {
		return 0, fmt.Errorf("%w: seq floor of %d bytes", errCorrupt, len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}

// putSeqFloor records floor in tx; it never lowers the stored value.
func putSeqFloor(tx *bolt.Tx, floor uint64) error {
	st := tx.Bucket(bucketState)
	if old, err := decodeSeqFloor(st.Get(keySeqFloor)); err == nil && old >= floor {
		return nil
	}
	if err := st.Put(keySeqFloor, binary.BigEndian.AppendUint64(nil, floor)); err != nil {
		return fmt.Errorf("put seq floor: %w", err)
	}
	return nil
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
		if _, err := tx.CreateBucketIfNotExists(bucketClients); err != nil {
			return err
		}
		_, err := tx.CreateBucketIfNotExists(bucketState)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("gateway: init %s: %w", path, err)
	}
	return &store{db: db}, nil
}

func (s *store) close() error { return s.db.Close() }

// seqFloor reads the sequence floor.
func (s *store) seqFloor() (uint64, error) {
	var floor uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		floor, err = decodeSeqFloor(tx.Bucket(bucketState).Get(keySeqFloor))
		return err
	})
	return floor, err
}

// storedSummary is what loading learns about one client.
type storedSummary struct {
	addr    [sphinx.AddressSize]byte
	meta    clientMeta
	metaOK  bool
	count   int
	bytes   int64
	highSeq uint64
	newest  int64 // latest stored-at among readable records; 0 if none

	provisional bool
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
			sum.metaOK = sum.meta.UnmarshalBinary(b.Get(keyMeta)) == nil
			sum.provisional = b.Get(keyProvisional) != nil
			if msgs := b.Bucket(bucketMsgs); msgs != nil {
				c := msgs.Cursor()
				for k, v := c.First(); k != nil; k, v = c.Next() {
					sum.count++
					sum.bytes += int64(len(v))
					if len(k) == 8 {
						sum.highSeq = max(sum.highSeq, binary.BigEndian.Uint64(k))
					}
					if storedAt, _, _, err := decodeRecord(v); err == nil {
						sum.newest = max(sum.newest, storedAt)
					}
				}
			}
			fn(sum)
			return nil
		})
	})
}

// withoutRecords returns the clients of cls that have no stored record on
// disk. Memory already says they have none; the retention sweep checks the
// disk too before deleting anything on memory's word.
func (s *store) withoutRecords(cls []*client) ([]*client, error) {
	var out []*client
	err := s.db.View(func(tx *bolt.Tx) error {
		out = out[:0]
		clients := tx.Bucket(bucketClients)
		for _, cl := range cls {
			if cb := clients.Bucket(cl.addr[:]); cb != nil {
				if msgs := cb.Bucket(bucketMsgs); msgs != nil {
					if k, _ := msgs.Cursor().First(); k != nil {
						continue
					}
				}
			}
			out = append(out, cl)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("gateway: read client records: %w", err)
	}
	return out, nil
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
