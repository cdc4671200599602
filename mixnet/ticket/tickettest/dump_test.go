package tickettest

import (
	"crypto/rand"
	"encoding/base64"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

func TestDumpFindsEveryForm(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	hidden, raw, absent := make([]byte, 32), make([]byte, 32), make([]byte, 32)
	rand.Read(hidden)
	rand.Read(raw)
	rand.Read(absent)
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte("outer"))
		if err != nil {
			return err
		}
		nb, err := b.CreateBucketIfNotExists([]byte("inner"))
		if err != nil {
			return err
		}
		if err := nb.Put([]byte("k"), []byte(`{"v":"`+base64.StdEncoding.EncodeToString(hidden)+`"}`)); err != nil {
			return err
		}
		return b.Put(raw, []byte("x"))
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	dump, err := Dump(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(Contains(dump, hidden)) != 1 || len(Contains(dump, raw)) != 1 {
		t.Fatalf("Dump or Contains missed a value: %+v", dump)
	}
	if w := Contains(dump, absent); w != nil {
		t.Fatalf("found what is not there: %v", w)
	}
	if d, _ := Dump(path, "other"); len(d) != 0 {
		t.Fatal("bucket filter ignored")
	}
}
