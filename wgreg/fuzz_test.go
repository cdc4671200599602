package wgreg

import (
	"bytes"
	"net/netip"
	"testing"
)

func FuzzParse(f *testing.F) {
	for _, m := range []interface {
		AppendBinary([]byte) ([]byte, error)
	}{
		&Register{ID: 1, Sealed: []byte{1, 2}},
		&Relay{ID: 2, Sealed: []byte{3}},
		&Error{ID: 3, Code: 1, Text: "x"},
	} {
		b, _ := m.AppendBinary(nil)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		msg, err := Parse(b)
		if err != nil {
			return
		}
		again, err := msg.(interface {
			AppendBinary([]byte) ([]byte, error)
		}).AppendBinary(nil)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("re-encoding %x gave %x, %v", b, again, err)
		}
	})
}

func FuzzRequest(f *testing.F) {
	b, _ := (&Request{Spend: []byte("s")}).AppendBinary(nil)
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Request
		if r.UnmarshalBinary(b) != nil {
			return
		}
		again, err := r.AppendBinary(nil)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("re-encoding %x gave %x, %v", b, again, err)
		}
	})
}

func FuzzAnswer(f *testing.F) {
	b, _ := (&Answer{Status: AnswerRefused, Text: "replay"}).AppendBinary(nil)
	f.Add(b)
	f.Add(make([]byte, answerOKLen))
	f.Add(make([]byte, answerOKLenV0))
	ok, _ := (&Answer{AddrV4: netip.MustParsePrefix("10.1.0.2/32"), Allowance: 500e6}).AppendBinary(nil)
	f.Add(ok)
	f.Fuzz(func(t *testing.T, b []byte) {
		var a Answer
		if a.UnmarshalBinary(b) != nil {
			return
		}
		again, err := a.AppendBinary(nil)
		if err != nil && a.Status == AnswerOK && a.AddrV4.IsValid() && a.AddrV4.Addr().Is4() {
			t.Fatalf("decoded answer %+v does not encode: %v", a, err)
		}
		var back Answer
		if err == nil && (back.UnmarshalBinary(again) != nil || back.Allowance != a.Allowance || back.PeerTimeout != a.PeerTimeout) {
			t.Fatalf("answer %+v re-encoded reads as %+v", a, back)
		}
	})
}

// FuzzOpenRequest feeds arbitrary bytes to a gateway's opening: it must
// refuse them without panicking.
func FuzzOpenRequest(f *testing.F) {
	gw := newTestGateway(f, "192.0.2.1:51820")
	sealed, _, err := SealRequest(&gw.node, 7, RoleEntry, &Request{})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sealed)
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, _, err := OpenRequest(b, RoleEntry, gw.node.Identity, gw.priv); err == nil && !bytes.Equal(b, sealed) {
			t.Fatal("arbitrary bytes opened")
		}
	})
}
