package anonymity

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func sampleRecords() []Record {
	return []Record{
		{Event{Time: 1, Node: 2, Peer: 3, Size: 2048, Role: RoleGateway, Dir: In}, Truth{Packet: 7, Sender: 3}},
		{Event{Time: -5, Node: 1<<32 - 1, Peer: 0, Size: 1<<32 - 1, Role: RoleExit, Dir: Out}, Truth{Packet: 1<<64 - 1, Sender: 9, Cover: true}},
		{Event{Time: 1 << 62, Node: 4, Peer: 5, Size: 0, Role: RoleMix, Dir: Out}, Truth{}},
	}
}

func TestTraceRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	in := sampleRecords()
	for _, r := range in {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if got, want := buf.Len(), headerLen+len(in)*RecordLen; got != want {
		t.Fatalf("file of %d bytes, want %d", got, want)
	}
	out, err := ReadTrace(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(in) {
		t.Fatalf("read %d records, want %d", len(out), len(in))
	}
	for i := range in {
		if out[i] != in[i] {
			t.Errorf("record %d: got %+v, want %+v", i, out[i], in[i])
		}
	}

	// A file cut inside a record, a wrong magic, version or record length
	// must be refused, not misread.
	full := buf.Bytes()
	bad := map[string][]byte{
		"truncated":    full[:len(full)-1],
		"short header": full[:5],
		"magic":        append([]byte("NYMTRACX"), full[8:]...),
		"version":      append(append([]byte(magic), 0, 2), full[10:]...),
		"reclen":       append(append([]byte(magic), full[8:10]...), append([]byte{0, 36}, full[12:]...)...),
	}
	for name, b := range bad {
		if _, err := ReadTrace(bytes.NewReader(b)); !errors.Is(err, errCorrupt) {
			t.Errorf("%s: err %v, want corrupt", name, err)
		}
	}
}

func TestRecordUnmarshalRejects(t *testing.T) {
	good, _ := sampleRecords()[0].AppendBinary(nil)
	for name, mutate := range map[string]func([]byte) []byte{
		"short": func(b []byte) []byte { return b[:RecordLen-1] },
		"long":  func(b []byte) []byte { return append(b, 0) },
		"role0": func(b []byte) []byte { b[20] = 0; return b },
		"role5": func(b []byte) []byte { b[20] = 5; return b },
		"dir":   func(b []byte) []byte { b[21] = 3; return b },
		"flags": func(b []byte) []byte { b[34] = 2; return b },
	} {
		b := mutate(append([]byte(nil), good...))
		r := Record{Truth: Truth{Packet: 42}}
		if err := r.UnmarshalBinary(b); !errors.Is(err, errCorrupt) {
			t.Errorf("%s: err %v, want corrupt", name, err)
		}
		if r.Truth.Packet != 42 {
			t.Errorf("%s: record changed on error", name)
		}
	}
}

func FuzzRecord(f *testing.F) {
	for _, r := range sampleRecords() {
		b, _ := r.AppendBinary(nil)
		f.Add(b)
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Record
		if err := r.UnmarshalBinary(b); err != nil {
			return
		}
		again, _ := r.AppendBinary(nil)
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs:\n got %x\nwant %x", again, b)
		}
	})
}

func FuzzReadTrace(f *testing.F) {
	var buf bytes.Buffer
	w, _ := NewWriter(&buf)
	for _, r := range sampleRecords() {
		_ = w.Write(r)
	}
	_ = w.Flush()
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		recs, err := ReadTrace(bytes.NewReader(b))
		if err != nil {
			return
		}
		if len(b) != headerLen+len(recs)*RecordLen {
			t.Fatalf("accepted %d bytes as %d records", len(b), len(recs))
		}
	})
}

// FuzzAnalyses: any trace that parses, however odd (unknown peers,
// arrivals with no departure, times in any order or range), is analysed
// without a panic.
func FuzzAnalyses(f *testing.F) {
	var b traceBuilder
	b.send(cA, m1)
	b.send(cB, m1)
	b.hop(m1, m2)
	b.exit(m2)
	var seed []byte
	for _, e := range b.ev {
		seed, _ = Record{Event: e}.AppendBinary(seed)
	}
	f.Add(seed)
	f.Fuzz(func(t *testing.T, b []byte) {
		var recs []Record
		for len(b) >= RecordLen {
			var r Record
			if r.UnmarshalBinary(b[:RecordLen]) == nil {
				recs = append(recs, r)
			}
			b = b[RecordLen:]
		}
		ev := Events(recs)
		rep := SenderEntropy(ev)
		for _, h := range rep.Bits {
			if h < 0 || h > rep.Ideal+1e-9 {
				t.Fatalf("%v bits with %d senders", h, rep.Senders)
			}
		}
		for _, dir := range []FlowDir{Upstream, Downstream} {
			if c, err := CorrelateFlows(ev, dir, CorrelationConfig{Window: time.Millisecond}); err == nil {
				_ = Score(c, FlowOwners(recs))
			}
		}
		CompareCover(recs, gw, In)
	})
}
