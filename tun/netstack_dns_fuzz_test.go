package tun

import (
	"errors"
	"strings"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// fuzzDNSAnswer packs a response to q with id, carrying the given records.
func fuzzDNSAnswer(tb testing.TB, id uint16, q dnsmessage.Question, rcode dnsmessage.RCode, answers ...dnsmessage.Resource) []byte {
	tb.Helper()
	m := dnsmessage.Message{
		Header:    dnsmessage.Header{ID: id, Response: true, RecursionAvailable: true, RCode: rcode},
		Questions: []dnsmessage.Question{q},
		Answers:   answers,
	}
	b, err := m.Pack()
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// FuzzDNSResponse feeds the netstack resolver's answer parser whatever a DNS
// server, or anyone who can put a datagram on the tunnel's port, may send:
// it must never panic, accept only the answer to the query asked (id,
// question), and return only addresses of the type asked for.
func FuzzDNSResponse(f *testing.F) {
	const id = 0x4242
	name := dnsmessage.MustNewName("host.example.")
	h := func(t dnsmessage.Type) dnsmessage.ResourceHeader {
		return dnsmessage.ResourceHeader{Name: name, Type: t, Class: dnsmessage.ClassINET, TTL: 60}
	}
	qa := dnsmessage.Question{Name: name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}
	qaaaa := dnsmessage.Question{Name: name, Type: dnsmessage.TypeAAAA, Class: dnsmessage.ClassINET}
	cname := dnsmessage.Resource{Header: h(dnsmessage.TypeCNAME), Body: &dnsmessage.CNAMEResource{CNAME: dnsmessage.MustNewName("other.example.")}}
	a := dnsmessage.Resource{Header: h(dnsmessage.TypeA), Body: &dnsmessage.AResource{A: [4]byte{192, 0, 2, 1}}}
	aaaa := dnsmessage.Resource{Header: h(dnsmessage.TypeAAAA), Body: &dnsmessage.AAAAResource{AAAA: [16]byte{0x20, 0x01, 0x0d, 0xb8, 15: 1}}}
	f.Add(fuzzDNSAnswer(f, id, qa, dnsmessage.RCodeSuccess, cname, a), false)
	f.Add(fuzzDNSAnswer(f, id, qaaaa, dnsmessage.RCodeSuccess, aaaa, a), true)
	f.Add(fuzzDNSAnswer(f, id, qa, dnsmessage.RCodeNameError), false)
	f.Add(fuzzDNSAnswer(f, id, qa, dnsmessage.RCodeServerFailure), false)
	f.Add(fuzzDNSAnswer(f, id+1, qa, dnsmessage.RCodeSuccess, a), false)
	f.Add([]byte{0x42, 0x42, 0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0}, false)

	f.Fuzz(func(t *testing.T, b []byte, six bool) {
		q := qa
		if six {
			q = qaaaa
		}
		m, ok := parseResponse(b, id, q)
		if !ok {
			return
		}
		if !m.Header.Response || m.Header.ID != id || len(m.Questions) != 1 ||
			m.Questions[0].Type != q.Type || m.Questions[0].Class != q.Class ||
			!strings.EqualFold(m.Questions[0].Name.String(), q.Name.String()) {
			t.Fatalf("accepted an answer to another query: %+v", m.Header)
		}
		addrs, err := answerAddrs(m, q.Type)
		if err != nil {
			if len(addrs) != 0 {
				t.Fatalf("error %v with %d addresses", err, len(addrs))
			}
			if m.Header.RCode == dnsmessage.RCodeNameError && !errors.Is(err, errNoSuchHost) {
				t.Fatalf("NXDOMAIN gave %v", err)
			}
			return
		}
		if m.Header.RCode != dnsmessage.RCodeSuccess {
			t.Fatalf("addresses from an answer with rcode %v", m.Header.RCode)
		}
		for _, ad := range addrs {
			if !ad.IsValid() || (q.Type == dnsmessage.TypeA) != ad.Is4() {
				t.Fatalf("asked %v, got %v", q.Type, ad)
			}
		}
	})
}
