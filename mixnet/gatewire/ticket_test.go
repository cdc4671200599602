package gatewire

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func TestTicketQuotaRoundTrip(t *testing.T) {
	for _, m := range []interface{ AppendBinary([]byte) []byte }{
		&Ticket{Spend: []byte("spend")},
		&Ticket{Spend: bytes.Repeat([]byte{7}, MaxSpendLen)},
		&Quota{Left: 200 << 20},
		&Quota{Left: 1, WantNext: true},
		&Quota{Unmetered: true},
	} {
		got, err := Parse(m.AppendBinary(nil))
		if err != nil {
			t.Fatalf("%T: %v", m, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("%T: got %+v, want %+v", m, got, m)
		}
	}
}

func TestTicketQuotaMalformed(t *testing.T) {
	cases := map[string][]byte{
		"empty ticket":         {byte(TypeTicket)},
		"long ticket":          append([]byte{byte(TypeTicket)}, make([]byte, MaxSpendLen+1)...),
		"short quota":          {byte(TypeQuota), 0, 1, 2},
		"long quota":           append([]byte{byte(TypeQuota), 0}, make([]byte, 9)...),
		"unknown quota flag":   append([]byte{byte(TypeQuota), 4}, make([]byte, 8)...),
		"unmetered with bytes": {byte(TypeQuota), quotaUnmetered, 0, 0, 0, 0, 0, 0, 0, 1},
		"unmetered wants next": append([]byte{byte(TypeQuota), quotaUnmetered | quotaWantNext}, make([]byte, 8)...),
	}
	for name, b := range cases {
		if _, err := Parse(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
}

// FuzzParseTicketQuota starts from the two ticket messages; FuzzParse covers
// every type too, these seeds only point it at the new ones.
func FuzzParseTicketQuota(f *testing.F) {
	f.Add((&Ticket{Spend: []byte{1, 2, 3}}).AppendBinary(nil))
	f.Add((&Quota{Left: 5, WantNext: true}).AppendBinary(nil))
	f.Add((&Quota{Unmetered: true}).AppendBinary(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			return
		}
		if out := m.(interface{ AppendBinary([]byte) []byte }).AppendBinary(nil); !bytes.Equal(out, b) {
			t.Fatalf("does not round-trip: %x → %x", b, out)
		}
	})
}
