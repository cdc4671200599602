package authority

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nym-go/nym/mixnet/directory"
	bolt "go.etcd.io/bbolt"
)

// store keeps the directory's state in a bbolt file so that a restart
// continues the same epoch numbering with the same nodes and roles. The
// signing key is not here; it lives in its own 0600 file.
type store struct {
	db *bolt.DB
}

var (
	bucketMeta        = []byte("meta")
	bucketDescriptors = []byte("descriptors")
	bucketHealth      = []byte("health")
	bucketAdmission   = []byte("admission")

	keyClock      = []byte("clock")
	keyAssignment = []byte("assignment")
)

// epochClock fixes how time maps to epochs. It is chosen on first start and
// never changes for a data dir: changing it would renumber epochs under
// clients' feet.
type epochClock struct {
	Genesis        time.Time     `json:"genesis"`
	EpochLength    time.Duration `json:"epoch_length_ns"`
	RotationEpochs uint64        `json:"rotation_epochs"`
}

// epochAt returns the epoch containing t (epoch 0 for times before genesis).
func (c epochClock) epochAt(t time.Time) uint64 {
	if t.Before(c.Genesis) {
		return 0
	}
	return uint64(t.Sub(c.Genesis) / c.EpochLength)
}

// start returns when epoch begins.
func (c epochClock) start(epoch uint64) time.Time {
	return c.Genesis.Add(time.Duration(epoch) * c.EpochLength)
}

// nodeRecord is a registered descriptor exactly as the node signed it.
type nodeRecord struct {
	// Descriptor is []byte rather than json.RawMessage on purpose: re-encoding
	// a RawMessage may rewrite it, and the signature covers the exact bytes.
	Descriptor []byte    `json:"descriptor"`
	Signature  []byte    `json:"signature"`
	ReceivedAt time.Time `json:"received_at"`
}

func (r nodeRecord) signed() directory.SignedDescriptor {
	return directory.SignedDescriptor{Descriptor: r.Descriptor, Signature: r.Signature}
}

// savedAssignment is the roles of one epoch.
type savedAssignment struct {
	Epoch      uint64     `json:"epoch"`
	Assignment assignment `json:"assignment"`
}

func openStore(path string) (*store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("open %s: database is locked; is another nym-api using this data dir?", path)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketDescriptors, bucketHealth, bucketAdmission} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("init %s: %w", path, err)
	}
	return &store{db: db}, nil
}

func (s *store) close() error { return s.db.Close() }

// getJSON decodes bucket[key] into v and reports whether it was there.
func (s *store) getJSON(bucket, key []byte, v any) (bool, error) {
	found := false
	err := s.db.View(func(tx *bolt.Tx) error {
		data := tx.Bucket(bucket).Get(key)
		if data == nil {
			return nil
		}
		found = true
		return json.Unmarshal(data, v)
	})
	if err != nil {
		return false, fmt.Errorf("read %s/%s: %w", bucket, key, err)
	}
	return found, nil
}

func (s *store) putJSON(bucket, key []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s/%s: %w", bucket, key, err)
	}
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Put(key, data) }); err != nil {
		return fmt.Errorf("write %s/%s: %w", bucket, key, err)
	}
	return nil
}

func (s *store) loadClock() (epochClock, bool, error) {
	var c epochClock
	ok, err := s.getJSON(bucketMeta, keyClock, &c)
	return c, ok, err
}

func (s *store) saveClock(c epochClock) error { return s.putJSON(bucketMeta, keyClock, c) }

func (s *store) loadAssignment() (savedAssignment, bool, error) {
	var a savedAssignment
	ok, err := s.getJSON(bucketMeta, keyAssignment, &a)
	return a, ok, err
}

func (s *store) saveAssignment(a savedAssignment) error {
	return s.putJSON(bucketMeta, keyAssignment, a)
}

func (s *store) putNode(id directory.Key, rec nodeRecord) error {
	return s.putJSON(bucketDescriptors, id[:], rec)
}

// deleteNodes forgets nodes and their probe history.
func (s *store) deleteNodes(ids []directory.Key) error {
	if len(ids) == 0 {
		return nil
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, id := range ids {
			if err := tx.Bucket(bucketDescriptors).Delete(id[:]); err != nil {
				return err
			}
			if err := tx.Bucket(bucketHealth).Delete(id[:]); err != nil {
				return err
			}
			if err := tx.Bucket(bucketAdmission).Delete(id[:]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete nodes: %w", err)
	}
	return nil
}

// forEach decodes every value of bucket into a fresh T. Entries that do not
// decode (a damaged or foreign record) are reported to skip and left alone,
// so one bad record cannot stop the directory from starting.
func forEach[T any](s *store, bucket []byte, f func(id directory.Key, v T), skip func(id []byte, err error)) error {
	return s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(k, data []byte) error {
			var v T
			if len(k) != directory.KeySize {
				skip(k, errors.New("key is not a node identity"))
				return nil
			}
			if err := json.Unmarshal(data, &v); err != nil {
				skip(k, err)
				return nil
			}
			f(directory.Key(k), v)
			return nil
		})
	})
}

// saveHealth writes the probe histories of many nodes in one transaction.
func (s *store) saveHealth(h map[directory.Key]probeHistory) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketHealth)
		for id, ph := range h {
			data, err := json.Marshal(ph)
			if err != nil {
				return err
			}
			if err := b.Put(id[:], data); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("write probe results: %w", err)
	}
	return nil
}
