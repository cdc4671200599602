// Package tickettest helps tests show that what an authority stores about
// an issuance and what a gateway stores about a spend cannot be linked:
// Dump reads every key and value out of a bbolt database (or some of its
// buckets), and Contains looks for secret values in a dump, in the forms a
// store might hold them.
package tickettest

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Record is one key/value pair of a dump, with the path of buckets it sits
// in.
type Record struct {
	Buckets []string
	Key     []byte
	Value   []byte
}

// Dump reads every record of the bbolt database at path, in nested buckets
// too; with buckets given, only the top-level buckets of those names. It
// opens the file read-only, so the database must be closed by its owner or
// opened by it read-only.
func Dump(path string, buckets ...string) ([]Record, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("dump %s: %w", path, err)
	}
	defer db.Close()
	out, err := DumpDB(db, buckets...)
	if err != nil {
		return nil, fmt.Errorf("dump %s: %w", path, err)
	}
	return out, nil
}

// DumpDB is Dump of a database the caller has open.
func DumpDB(db *bolt.DB, buckets ...string) ([]Record, error) {
	var out []Record
	err := db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			if len(buckets) > 0 && !slices.Contains(buckets, string(name)) {
				return nil
			}
			return dumpBucket(b, []string{string(name)}, &out)
		})
	})
	return out, err
}

func dumpBucket(b *bolt.Bucket, path []string, out *[]Record) error {
	return b.ForEach(func(k, v []byte) error {
		if v == nil { // a nested bucket
			if nb := b.Bucket(k); nb != nil {
				return dumpBucket(nb, append(slices.Clone(path), string(k)), out)
			}
		}
		*out = append(*out, Record{Buckets: path, Key: bytes.Clone(k), Value: bytes.Clone(v)})
		return nil
	})
}

// Forms are the encodings a store might keep a value in: raw, hex (both
// cases), and standard and URL base64 with and without padding.
func Forms(secret []byte) [][]byte {
	return [][]byte{
		secret,
		[]byte(hex.EncodeToString(secret)),
		bytes.ToUpper([]byte(hex.EncodeToString(secret))),
		[]byte(base64.StdEncoding.EncodeToString(secret)),
		[]byte(base64.RawStdEncoding.EncodeToString(secret)),
		[]byte(base64.URLEncoding.EncodeToString(secret)),
		[]byte(base64.RawURLEncoding.EncodeToString(secret)),
	}
}

// Contains reports where in the dump any form of secret appears (in a key
// or a value), as "bucket/…: key" strings; nil when it appears nowhere.
// Secrets shorter than 16 bytes are refused: they would match by chance.
func Contains(dump []Record, secret []byte) []string {
	if len(secret) < 16 {
		panic("tickettest.Contains: secret shorter than 16 bytes")
	}
	var where []string
	for _, r := range dump {
		for _, f := range Forms(secret) {
			if bytes.Contains(r.Key, f) || bytes.Contains(r.Value, f) {
				where = append(where, fmt.Sprintf("%v: key %x", r.Buckets, r.Key))
				break
			}
		}
	}
	return where
}

// Values lists every key and value of the dump at least minLen bytes long:
// what one store holds, to look for in another's dump with Contains.
func Values(dump []Record, minLen int) [][]byte {
	var out [][]byte
	for _, r := range dump {
		for _, x := range [][]byte{r.Key, r.Value} {
			if len(x) >= minLen {
				out = append(out, x)
			}
		}
	}
	return out
}
