package anonymity

import (
	"crypto/sha256"
	"encoding/binary"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestIDOf(t *testing.T) {
	key := []byte("an identity key of 32 bytes.....")
	h := sha256.Sum256(key)
	if got, want := IDOf(key), NodeID(binary.BigEndian.Uint32(h[:4])); got != want {
		t.Fatalf("IDOf = %#x, want the first 4 bytes of SHA-256, %#x", got, want)
	}
	if IDOf([]byte("a")) == IDOf([]byte("b")) {
		t.Fatal("two keys share an id")
	}
	a := EndpointID(netip.MustParseAddrPort("192.0.2.1:443"))
	if a != EndpointID(netip.MustParseAddrPort("[::ffff:192.0.2.1]:443")) {
		t.Error("a v4-mapped endpoint is named apart from its v4 form")
	}
	if a == EndpointID(netip.MustParseAddrPort("192.0.2.1:444")) {
		t.Error("the port is not part of an endpoint's id")
	}
	if want := IDOf([]byte{192, 0, 2, 1, 1, 187}); a != want {
		t.Errorf("EndpointID = %#x, want IDOf(address|port) %#x", a, want)
	}
}

// TestRecorderConcurrent records from several goroutines at once (run with
// -race) and reads back every record, whole.
func TestRecorderConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "trace")
	r, err := OpenRecorder(path)
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 8, 500
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				r.Record(Record{
					Event: Event{Node: NodeID(w + 1), Peer: NodeID(i + 1), Size: 2048, Role: RoleMix, PeerRole: RoleMix, Dir: In},
					Truth: Truth{Packet: r.Packet()},
				})
			}
		})
	}
	wg.Wait()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r.Record(Record{Event: Event{Node: 1, Role: RoleMix, PeerRole: RoleMix, Dir: In}}) // after Close: dropped
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("trace file mode %v, want 0600", fi.Mode().Perm())
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := ReadTrace(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != writers*each {
		t.Fatalf("read %d records, want %d", len(recs), writers*each)
	}
	seen := make(map[uint64]bool)
	next := make(map[NodeID]NodeID)
	for i, rec := range recs {
		if rec.Time == 0 || (i > 0 && rec.Time < recs[i-1].Time) {
			t.Fatalf("record %d: time %d not stamped in order", i, rec.Time)
		}
		if rec.Truth.Packet == 0 || seen[rec.Truth.Packet] {
			t.Fatalf("record %d: packet id %d zero or repeated", i, rec.Truth.Packet)
		}
		seen[rec.Truth.Packet] = true
		// Each writer's records keep its order.
		if want := next[rec.Node] + 1; rec.Peer != want {
			t.Fatalf("writer %d: record %d after %d", rec.Node, rec.Peer, want-1)
		}
		next[rec.Node] = rec.Peer
	}
}

func TestRecorderRefusesExistingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "trace")
	if err := os.WriteFile(path, []byte("an earlier run"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenRecorder(path); err == nil {
		t.Fatal("OpenRecorder overwrote an existing file")
	}
	if b, _ := os.ReadFile(path); string(b) != "an earlier run" {
		t.Fatalf("the existing file changed: %q", b)
	}
}

func TestNilRecorder(t *testing.T) {
	var r *Recorder
	r.Record(Record{})
	if r.Packet() != 0 {
		t.Error("a nil recorder handed out a packet id")
	}
	if err := r.Close(); err != nil {
		t.Error(err)
	}
	if n := testing.AllocsPerRun(100, func() { r.Record(Record{}) }); n != 0 {
		t.Errorf("a nil recorder allocates %v per record", n)
	}
}

func BenchmarkRecorder(b *testing.B) {
	r, err := OpenRecorder(filepath.Join(b.TempDir(), "trace"))
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	rec := Record{Event: Event{Node: 1, Peer: 2, Size: 2048, Role: RoleMix, PeerRole: RoleMix, Dir: In}}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r.Record(rec)
		}
	})
}
