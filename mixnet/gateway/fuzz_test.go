package gateway

import (
	"bytes"
	"testing"
)

// The database is ours, but a damaged file must not crash the gateway:
// the decoders of stored values refuse what they cannot read, and what they
// accept re-encodes to the same bytes.

func FuzzDecodeRecord(f *testing.F) {
	f.Add(encodeRecord(1_700_000_000_000_000_000, id(1), []byte("payload")))
	f.Add(encodeRecord(-1, [16]byte{}, nil))
	f.Add([]byte{recordVersion})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		storedAt, id, payload, err := decodeRecord(b)
		if err != nil {
			return
		}
		if again := encodeRecord(storedAt, id, payload); !bytes.Equal(again, b) {
			t.Fatalf("re-encoded %x, read %x", again, b)
		}
	})
}

func FuzzDecodeMeta(f *testing.F) {
	f.Add(clientMeta{Reserved: 65537, Dropped: 3}.encode())
	f.Add([]byte{metaVersion, 1, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMeta(b)
		if err != nil {
			return
		}
		if again := m.encode(); !bytes.Equal(again, b) {
			t.Fatalf("re-encoded %x, read %x", again, b)
		}
	})
}
