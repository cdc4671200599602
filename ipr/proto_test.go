package ipr

import (
	"bytes"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nym-go/nym/tun/ippkt"
)

var (
	testNonce = [NonceSize]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	testPair  = AddrPair{V4: netip.MustParseAddr("10.0.1.2"), V6: netip.MustParseAddr("fc00::102")}
)

func TestRequestRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		req  Request
		size int
	}{
		{"connect", &Connect{RequestID: 7, Nonce: testNonce}, 2 + 8 + 16 + 1},
		{"connect want v4", &Connect{RequestID: 7, Nonce: testNonce, Want: AddrPair{V4: testPair.V4}}, 2 + 25 + 4},
		{"connect want v6", &Connect{RequestID: 7, Nonce: testNonce, Want: AddrPair{V6: testPair.V6}}, 2 + 25 + 16},
		{"connect want both", &Connect{RequestID: 1 << 60, Nonce: testNonce, Want: testPair}, 2 + 25 + 20},
		{"connect reply interval", &Connect{RequestID: 7, Nonce: testNonce, ReplyInterval: 9500 * time.Microsecond}, 2 + 25 + 4},
		{"connect want both and reply interval", &Connect{RequestID: 7, Nonce: testNonce, Want: testPair, ReplyInterval: time.Microsecond}, 2 + 25 + 20 + 4},
		{"disconnect", &Disconnect{}, 2},
		{"ping", &Ping{ID: 99}, 10},
		{"data", &DataUp{Seq: 3, Bundle: []byte{0, 1, 0x45}}, DataUpOverhead + 3},
		{"data empty", &DataUp{Seq: 0, Bundle: []byte{}}, DataUpOverhead},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := MarshalRequest(tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if len(b) != tt.size || b[0] != ProtocolVersion {
				t.Fatalf("wire form % x: %d bytes, want %d starting with the version", b, len(b), tt.size)
			}
			got, err := ParseRequest(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.req) {
				t.Fatalf("parsed %+v, want %+v", got, tt.req)
			}
			if _, err := ParseResponse(b); err == nil {
				t.Fatal("a request parsed as a response")
			}
		})
	}
}

func TestResponseRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		resp Response
	}{
		{"connect ok", &ConnectOK{RequestID: 7, Addrs: testPair, MTU: 1554}},
		{"connect fail", &ConnectFail{RequestID: 7, Reason: FailNoFreeAddress}},
		{"connect fail unknown reason", &ConnectFail{RequestID: 7, Reason: 200}},
		{"pong", &Pong{ID: 5}},
		{"data", &DataDown{Seq: 9, Backlog: 3, Bundle: []byte{0, 1, 0x60}}},
		{"info plain", &Info{Code: InfoLowSURBs, Text: "3 SURBs left"}},
		{"info v4", &Info{Code: InfoPolicyRefused, Dest: netip.MustParseAddrPort("192.0.2.1:25"), Proto: ippkt.ProtoTCP, Text: "port 25 is closed"}},
		{"info v6", &Info{Code: InfoPolicyRefused, Dest: netip.MustParseAddrPort("[2001:db8::1]:25"), Proto: ippkt.ProtoTCP}},
		{"unrequested disconnect", &UnrequestedDisconnect{Reason: ReasonIdle}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := MarshalResponse(tt.resp)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseResponse(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.resp) {
				t.Fatalf("parsed %+v, want %+v", got, tt.resp)
			}
			if _, err := ParseRequest(b); err == nil {
				t.Fatal("a response parsed as a request")
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	v := byte(ProtocolVersion)
	long := append([]byte{v, 0x85, 0, 0, 0}, strings.Repeat("x", MaxInfoText+1)...)
	tests := []struct {
		name     string
		b        []byte
		response bool
		version  bool // ErrVersion rather than ErrMalformed
	}{
		{"empty", nil, false, false},
		{"version only", []byte{v}, false, false},
		{"other version", []byte{2, 0x03, 0, 0, 0, 0, 0, 0, 0, 0}, false, true},
		{"unknown request type", []byte{v, 0x7f}, false, false},
		{"unknown response type", []byte{v, 0xff}, true, false},
		{"connect short", append([]byte{v, 0x01}, make([]byte, 24)...), false, false},
		{"connect long", append([]byte{v, 0x01}, make([]byte, 26)...), false, false},
		{"connect unknown flag", append(append([]byte{v, 0x01}, make([]byte, 24)...), 0x08), false, false},
		{"connect zero reply interval", append(append([]byte{v, 0x01}, make([]byte, 24)...), connectReplyInterval, 0, 0, 0, 0), false, false},
		{"connect reply interval cut", append(append([]byte{v, 0x01}, make([]byte, 24)...), connectReplyInterval, 0, 0, 1), false, false},
		{"connect flag without address", append(append([]byte{v, 0x01}, make([]byte, 24)...), connectWantV4), false, false},
		{"connect v4-mapped v6", append(append(append([]byte{v, 0x01}, make([]byte, 24)...), connectWantV6),
			netip.MustParseAddr("::ffff:10.0.0.2").AsSlice()...), false, false},
		{"disconnect with body", []byte{v, 0x02, 0}, false, false},
		{"ping short", []byte{v, 0x03, 0, 0, 0}, false, false},
		{"ping long", []byte{v, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0}, false, false},
		{"data without seq", []byte{v, 0x04, 0, 0, 0, 0, 0, 0, 0}, false, false},
		{"connect ok short", append([]byte{v, 0x81}, make([]byte, 29)...), true, false},
		{"connect ok long", append([]byte{v, 0x81}, make([]byte, 31)...), true, false},
		{"connect fail short", []byte{v, 0x82, 0, 0, 0, 0, 0, 0, 0, 0}, true, false},
		{"pong short", []byte{v, 0x83, 0}, true, false},
		{"data down without backlog", []byte{v, 0x84, 0, 0, 0, 0, 0, 0, 0, 0, 0}, true, false},
		{"info short", []byte{v, 0x85, 0, 0}, true, false},
		{"info bad family", []byte{v, 0x85, 0, 0, 5}, true, false},
		{"info v4 cut", []byte{v, 0x85, 1, 6, 4, 192, 0, 2, 1, 0}, true, false},
		{"info v6 cut", append([]byte{v, 0x85, 1, 6, 6}, make([]byte, 17)...), true, false},
		{"info text too long", long, true, false},
		{"info text not utf-8", []byte{v, 0x85, 0, 0, 0, 0xff, 0xfe}, true, false},
		{"unrequested disconnect short", []byte{v, 0x86}, true, false},
		{"unrequested disconnect long", []byte{v, 0x86, 1, 1}, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			if tt.response {
				_, err = ParseResponse(tt.b)
			} else {
				_, err = ParseRequest(tt.b)
			}
			want := ErrMalformed
			if tt.version {
				want = ErrVersion
			}
			if !errors.Is(err, want) {
				t.Fatalf("err = %v, want %v", err, want)
			}
		})
	}
}

func TestMarshalRefusesWrongFamilies(t *testing.T) {
	for _, m := range []Request{
		&Connect{Nonce: testNonce, Want: AddrPair{V4: testPair.V6}},
		&Connect{Nonce: testNonce, Want: AddrPair{V6: testPair.V4}},
		&Connect{Nonce: testNonce, Want: AddrPair{V6: netip.MustParseAddr("::ffff:10.0.0.2")}},
		&Connect{Nonce: testNonce, ReplyInterval: 999 * time.Nanosecond},
		&Connect{Nonce: testNonce, ReplyInterval: -time.Millisecond},
		&Connect{Nonce: testNonce, ReplyInterval: 2 * time.Hour},
	} {
		if _, err := MarshalRequest(m); err == nil {
			t.Errorf("%+v marshalled", m)
		}
	}
	if _, err := MarshalResponse(&ConnectOK{Addrs: AddrPair{V4: testPair.V4}}); err == nil {
		t.Error("ConnectOK without an IPv6 address marshalled")
	}
}

func TestInfoTextIsClamped(t *testing.T) {
	text := strings.Repeat("é", MaxInfoText) // 2 bytes a rune: the cut falls on a rune boundary
	b, err := MarshalResponse(&Info{Code: InfoOther, Text: text + "\xff"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseResponse(b)
	if err != nil {
		t.Fatalf("clamped info does not parse: %v", err)
	}
	info := got.(*Info)
	if len(info.Text) != MaxInfoText || !strings.HasPrefix(text, info.Text) {
		t.Fatalf("text of %d bytes, want the first %d of the original", len(info.Text), MaxInfoText)
	}
	// An IPv4-mapped destination goes out as plain IPv4.
	b, _ = MarshalResponse(&Info{Dest: netip.AddrPortFrom(netip.MustParseAddr("::ffff:192.0.2.1"), 80)})
	got, err = ParseResponse(b)
	if err != nil || got.(*Info).Dest != netip.MustParseAddrPort("192.0.2.1:80") {
		t.Fatalf("mapped destination: %+v, %v", got, err)
	}
}

func TestDataDownHeaderMatchesMarshal(t *testing.T) {
	want, _ := MarshalResponse(&DataDown{Seq: 0x0102030405060708, Backlog: 0x0a0b})
	got := make([]byte, DataDownOverhead)
	PutDataDownHeader(got, 0x0102030405060708, 0x0a0b)
	if !bytes.Equal(got, want) {
		t.Fatalf("PutDataDownHeader % x, marshal % x", got, want)
	}
}
