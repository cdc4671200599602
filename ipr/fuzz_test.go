package ipr

import (
	"bytes"
	"net/netip"
	"testing"
	"time"
)

// Whatever parses must marshal back to the same bytes: the codec is strict,
// so there is exactly one wire form of each message.

func FuzzRequest(f *testing.F) {
	for _, r := range []Request{
		&Connect{RequestID: 1, Nonce: testNonce},
		&Connect{RequestID: 2, Nonce: testNonce, Want: testPair},
		&Connect{RequestID: 2, Nonce: testNonce, Want: AddrPair{V6: testPair.V6}, ReplyInterval: 10 * time.Millisecond},
		&Disconnect{},
		&Ping{ID: 3},
		&DataUp{Seq: 4, Bundle: []byte{0, 2, 0x45, 0}},
	} {
		b, _ := MarshalRequest(r)
		f.Add(b)
	}
	f.Add([]byte{ProtocolVersion})
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := ParseRequest(b)
		if err != nil {
			return
		}
		again, err := MarshalRequest(req)
		if err != nil {
			t.Fatalf("parsed %+v does not marshal: %v", req, err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("round trip changed % x into % x", b, again)
		}
	})
}

func FuzzResponse(f *testing.F) {
	for _, r := range []Response{
		&ConnectOK{RequestID: 1, Addrs: testPair, MTU: 1500},
		&ConnectFail{RequestID: 2, Reason: FailAlreadyConnected},
		&Pong{ID: 3},
		&DataDown{Seq: 4, Backlog: 5, Bundle: []byte{0, 1, 0x60}},
		&Info{Code: InfoPolicyRefused, Dest: netip.MustParseAddrPort("[2001:db8::1]:25"), Proto: 6, Text: "no"},
		&Info{Code: InfoLowSURBs, Dest: netip.MustParseAddrPort("192.0.2.1:53"), Text: "é"},
		&UnrequestedDisconnect{Reason: ReasonIdle},
	} {
		b, _ := MarshalResponse(r)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		resp, err := ParseResponse(b)
		if err != nil {
			return
		}
		again, err := MarshalResponse(resp)
		if err != nil {
			t.Fatalf("parsed %+v does not marshal: %v", resp, err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("round trip changed % x into % x", b, again)
		}
	})
}

// FuzzBundle: SplitBundle never panics, returns only well-formed packets
// lying inside the bundle, and re-encoding them splits back to the same;
// WalkBundle agrees with it.
func FuzzBundle(f *testing.F) {
	good4 := udp4(f, "10.0.0.2", "192.0.2.1", 53, "hello")
	good6 := udp6(f, "fc00::2", "2001:db8::1", 443, "world")
	enc := NewBundleEncoder(1 << 16)
	for _, p := range [][]byte{good4, good6} {
		if err := enc.Add(p); err != nil {
			f.Fatal(err)
		}
	}
	f.Add(enc.Bytes(), 2000)
	f.Add(append(enc.Bytes()[:LengthPrefixSize+len(good4):LengthPrefixSize+len(good4)], 0, 0, 9), 100)
	f.Add([]byte{0xff, 0xff, 0x45}, 10)
	f.Add([]byte{0, 3, 0x45, 0, 3}, 1)
	f.Fuzz(func(t *testing.T, bundle []byte, capacity int) {
		pkts, malformed := SplitBundle(bundle, nil)
		if malformed < 0 || malformed > len(bundle) {
			t.Fatalf("malformed = %d for %d bytes", malformed, len(bundle))
		}
		total := 0
		for _, p := range pkts {
			if _, err := parseIP(p); err != nil {
				t.Fatalf("returned a bad packet: %v", err)
			}
			total += LengthPrefixSize + len(p)
		}
		if total > len(bundle) {
			t.Fatalf("packets span %d bytes of a %d-byte bundle", total, len(bundle))
		}
		// WalkBundle, the router's split, follows the same rules and
		// hands out the headers it parsed.
		i := 0
		walkMalformed := WalkBundle(bundle, func(p []byte, h Header) {
			if i >= len(pkts) || !bytes.Equal(p, pkts[i]) || &p[0] != &pkts[i][0] {
				t.Fatalf("WalkBundle's packet %d differs from SplitBundle's", i)
			}
			if want, _ := parseIP(p); h != want {
				t.Fatalf("WalkBundle's header %+v, want %+v", h, want)
			}
			i++
		})
		if i != len(pkts) || walkMalformed != malformed {
			t.Fatalf("WalkBundle: %d packets, %d malformed; SplitBundle: %d, %d", i, walkMalformed, len(pkts), malformed)
		}
		// Pack them again at the fuzzed capacity: each either goes in, or
		// the encoder says why not, and what went in comes back out.
		enc := NewBundleEncoder(capacity)
		var packed [][]byte
		for _, p := range pkts {
			if err := enc.Add(p); err == nil {
				packed = append(packed, p)
			}
		}
		if enc.Len() > max(capacity, 0) {
			t.Fatalf("bundle of %d bytes for capacity %d", enc.Len(), capacity)
		}
		again, bad := SplitBundle(enc.Bytes(), nil)
		if bad != 0 || len(again) != len(packed) {
			t.Fatalf("re-split: %d packets (%d malformed), packed %d", len(again), bad, len(packed))
		}
		for i := range again {
			if !bytes.Equal(again[i], packed[i]) {
				t.Fatalf("packet %d changed in the round trip", i)
			}
		}
	})
}
