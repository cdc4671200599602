package main

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// The hash README.md documents for /1MiB; changing the content is a
// visible change.
const wantBlobSHA256 = "18717c8d4e304db0c1b2cc355f5c89188b07c34595aff01a2b4d7fdcf30ac9d1"

func TestHTTP(t *testing.T) {
	srv := httptest.NewServer(newHTTPHandler())
	defer srv.Close()

	body := get(t, srv.URL+"/")
	if !strings.HasPrefix(body, "hello from the internet; you are 127.0.0.1:") {
		t.Errorf("/ = %q", body)
	}
	page := get(t, srv.URL+"/page")
	total := 0
	for i := range pageObjects {
		if !strings.Contains(page, `src="/obj/`+strconv.Itoa(i)+`"`) {
			t.Errorf("/page does not reference /obj/%d", i)
		}
		total += len(get(t, srv.URL+"/obj/"+strconv.Itoa(i)))
	}
	if total != 500<<10 {
		t.Errorf("/page's objects: %d bytes, want 500 KiB", total)
	}
	blob := get(t, srv.URL+"/1MiB")
	sum := sha256.Sum256([]byte(blob))
	if len(blob) != 1<<20 || hex.EncodeToString(sum[:]) != wantBlobSHA256 || blobSHA256() != wantBlobSHA256 {
		t.Errorf("/1MiB: %d bytes, sha256 %x; want 1 MiB with %s", len(blob), sum, wantBlobSHA256)
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return string(b)
}

func TestDNSAnswer(t *testing.T) {
	zone := names{}
	for _, v := range []string{"Internet.Test=198.51.100.2", "internet.test.=2001:db8:1::2"} {
		if err := zone.Set(v); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name  string
		typ   dnsmessage.Type
		rcode dnsmessage.RCode
		want  []string
	}{
		{"internet.test.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, []string{"198.51.100.2"}},
		{"INTERNET.test.", dnsmessage.TypeAAAA, dnsmessage.RCodeSuccess, []string{"2001:db8:1::2"}},
		{"internet.test.", dnsmessage.TypeMX, dnsmessage.RCodeSuccess, nil},
		{"example.com.", dnsmessage.TypeA, dnsmessage.RCodeNameError, nil},
	} {
		q := dnsmessage.Message{
			Header:    dnsmessage.Header{ID: 4242, RecursionDesired: true},
			Questions: []dnsmessage.Question{{Name: dnsmessage.MustNewName(tc.name), Type: tc.typ, Class: dnsmessage.ClassINET}},
		}
		query, err := q.Pack()
		if err != nil {
			t.Fatal(err)
		}
		raw, err := answer(query, zone)
		if err != nil {
			t.Fatalf("%s %v: %v", tc.name, tc.typ, err)
		}
		var m dnsmessage.Message
		if err := m.Unpack(raw); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, a := range m.Answers {
			switch r := a.Body.(type) {
			case *dnsmessage.AResource:
				got = append(got, netip.AddrFrom4(r.A).String())
			case *dnsmessage.AAAAResource:
				got = append(got, netip.AddrFrom16(r.AAAA).String())
			}
		}
		if m.ID != 4242 || !m.Response || m.RCode != tc.rcode || strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("%s %v: id %d rcode %v answers %v; want rcode %v answers %v", tc.name, tc.typ, m.ID, m.RCode, got, tc.rcode, tc.want)
		}
	}
	if _, err := answer([]byte{1, 2, 3}, zone); err == nil {
		t.Error("a garbage query was answered")
	}
}
