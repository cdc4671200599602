package ticket

import (
	"bytes"
	"crypto/ed25519"
	"testing"
	"time"
)

// Every decoder of network input: whatever decodes must encode back to the
// same bytes (so no two encodings of one value exist), and nothing panics.

type codec interface {
	AppendBinary([]byte) ([]byte, error)
	UnmarshalBinary([]byte) error
}

func fuzzRoundTrip(f *testing.F, seeds [][]byte, fresh func() codec) {
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v := fresh()
		if err := v.UnmarshalBinary(data); err != nil {
			return
		}
		enc, err := v.AppendBinary(nil)
		if err != nil {
			t.Fatalf("decoded value does not encode: %v", err)
		}
		if !bytes.Equal(enc, data) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", data, enc)
		}
	})
}

func seedTicket(f *testing.F) (Ticket, ed25519.PrivateKey) {
	tn := newTestNet(f)
	return tn.issue(f, TypeMixnetEntry, 0, 1)
}

func FuzzTicket(f *testing.F) {
	tk, _ := seedTicket(f)
	enc, _ := tk.AppendBinary(nil)
	fuzzRoundTrip(f, [][]byte{enc, {1}}, func() codec { return new(Ticket) })
}

func FuzzSpend(f *testing.F) {
	tk, priv := seedTicket(f)
	s, _ := NewSpend(tk, priv, [32]byte{1}, time.Now())
	enc, _ := s.AppendBinary(nil)
	fuzzRoundTrip(f, [][]byte{enc}, func() codec { return new(Spend) })
}

func FuzzIssueRequest(f *testing.F) {
	r := IssueRequest{Voucher: "nv1.mixnet-entry.2.AAAAAAAAAAAAAAAAAAAAAA", Type: 1, Expiry: 1e9, Blinded: [][]byte{make([]byte, 256), {1}}}
	enc, _ := r.AppendBinary(nil)
	fuzzRoundTrip(f, [][]byte{enc}, func() codec { return new(IssueRequest) })
}

func FuzzIssueResponse(f *testing.F) {
	r := IssueResponse{Signatures: [][]byte{make([]byte, 256), {1, 2}}}
	enc, _ := r.AppendBinary(nil)
	fuzzRoundTrip(f, [][]byte{enc}, func() codec { return new(IssueResponse) })
}

func FuzzReport(f *testing.F) {
	_, priv, _ := ed25519.GenerateKey(nil)
	r, _ := SignReport(priv, [][32]byte{{1}, {2}}, time.Now())
	enc, _ := r.AppendBinary(nil)
	fuzzRoundTrip(f, [][]byte{enc}, func() codec { return new(Report) })
}

func FuzzSpentList(f *testing.F) {
	l := SpentList{Next: 7, Spent: []SpentSerial{{Serial: [32]byte{1}, Expiry: 5, Double: true}, {Serial: [32]byte{2}}}}
	enc, _ := l.AppendBinary(nil)
	fuzzRoundTrip(f, [][]byte{enc}, func() codec { return new(SpentList) })
}

func FuzzBook(f *testing.F) {
	tk, priv := seedTicket(f)
	b := NewBook()
	b.add([][32]byte{[32]byte(priv.Seed())}, []Ticket{tk})
	b.SetLeft(TypeMixnetEntry, 9)
	enc, _ := b.appendLocked(nil)
	f.Add(enc)
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := decodeBook(data)
		if err != nil {
			return
		}
		enc, err := b.appendLocked(nil)
		if err != nil {
			t.Fatalf("decoded book does not encode: %v", err)
		}
		if _, err := decodeBook(enc); err != nil {
			t.Fatalf("re-encoded book does not decode: %v", err)
		}
	})
}
