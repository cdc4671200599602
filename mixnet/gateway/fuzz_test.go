package gateway

import (
	"bytes"
	"encoding/binary"
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

// metaV1 is a version 1 meta as gateways before last-seen wrote it.
func metaV1(reserved, dropped uint64) []byte {
	b := []byte{metaVersion1}
	b = binary.BigEndian.AppendUint64(b, reserved)
	return binary.BigEndian.AppendUint64(b, dropped)
}

// A version 2 meta re-encodes to the same bytes; a version 1 meta reads
// with LastSeen unknown (0) and, written again as version 2, keeps its
// Reserved and Dropped. Nothing else is accepted.
func FuzzUnmarshalMeta(f *testing.F) {
	f.Add(clientMeta{Reserved: 65537, Dropped: 3, LastSeen: 1_700_000_000_000_000_000}.value())
	f.Add(clientMeta{LastSeen: -1}.value())
	f.Add(metaV1(65537, 3))
	f.Add([]byte{metaVersion, 1, 2})
	f.Add([]byte{metaVersion1})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var m clientMeta
		if m.UnmarshalBinary(b) != nil {
			return
		}
		switch {
		case len(b) == metaLen && b[0] == metaVersion:
			if again := m.value(); !bytes.Equal(again, b) {
				t.Fatalf("re-encoded %x, read %x", again, b)
			}
		case len(b) == metaLenV1 && b[0] == metaVersion1:
			if m.LastSeen != 0 {
				t.Fatalf("version 1 meta %x read with last seen %d", b, m.LastSeen)
			}
			var up clientMeta
			err := up.UnmarshalBinary(m.value())
			if err != nil || up != m || !bytes.Equal(m.value()[1:metaLenV1], b[1:]) {
				t.Fatalf("version 1 meta %x upgraded to %+v (%v)", b, up, err)
			}
		default:
			t.Fatalf("accepted %x as %+v", b, m)
		}
	})
}

func FuzzDecodeSeqFloor(f *testing.F) {
	f.Add(binary.BigEndian.AppendUint64(nil, 1<<20))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		floor, err := decodeSeqFloor(b)
		if err != nil || b == nil {
			return
		}
		if again := binary.BigEndian.AppendUint64(nil, floor); !bytes.Equal(again, b) {
			t.Fatalf("re-encoded %x, read %x", again, b)
		}
	})
}
