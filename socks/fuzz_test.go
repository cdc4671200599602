package socks

import (
	"bufio"
	"bytes"
	"testing"
)

// FuzzSOCKS5Request: the parser never panics, and what it accepts encodes
// back to a request it parses to the same thing.
func FuzzSOCKS5Request(f *testing.F) {
	f.Add([]byte{5, 1, 0, 1, 127, 0, 0, 1, 0, 80})
	f.Add([]byte{5, 3, 0, 3, 13, 'i', 'n', 't', 'e', 'r', 'n', 'e', 't', '.', 't', 'e', 's', 't', 1, 187})
	f.Add([]byte{5, 1, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 22})
	f.Add([]byte{5, 1, 0, 3, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := readSOCKS5Request(bytes.NewReader(data))
		if err != nil {
			if code := replyFor(err); code == ReplySucceeded {
				t.Fatalf("error %v maps to success", err)
			}
			return
		}
		enc, err := appendAddr5([]byte{5, req.Cmd, 0}, req.Dst)
		if err != nil {
			t.Fatalf("accepted request does not encode: %v", err)
		}
		again, err := readSOCKS5Request(bytes.NewReader(enc))
		if err != nil || again != req {
			t.Fatalf("round trip: %+v → %x → %+v, %v", req, enc, again, err)
		}
	})
}

// FuzzSOCKS4Request: no panic, only CONNECT accepted, strings bounded, and
// the round trip holds.
func FuzzSOCKS4Request(f *testing.F) {
	f.Add([]byte{4, 1, 0, 80, 127, 0, 0, 1, 'u', 0})
	f.Add([]byte{4, 1, 0, 80, 0, 0, 0, 1, 0, 'a', '.', 't', 'e', 's', 't', 0})
	f.Add([]byte{4, 2, 0, 80, 127, 0, 0, 1, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := readSOCKS4Request(bufio.NewReader(bytes.NewReader(data)))
		if err != nil {
			if replyFor(err) == ReplySucceeded {
				t.Fatalf("error %v maps to success", err)
			}
			return
		}
		if req.Cmd != cmdConnect || len(req.User) > maxSOCKS4String || len(req.Dst.Name) > maxSOCKS4String {
			t.Fatalf("accepted %+v", req)
		}
		enc := []byte{4, req.Cmd, byte(req.Dst.Port >> 8), byte(req.Dst.Port)}
		if req.Dst.Name != "" {
			enc = append(enc, 0, 0, 0, 1)
		} else {
			ip := req.Dst.IP.As4()
			enc = append(enc, ip[:]...)
		}
		enc = append(append(enc, req.User...), 0)
		if req.Dst.Name != "" {
			enc = append(append(enc, req.Dst.Name...), 0)
		}
		again, err := readSOCKS4Request(bufio.NewReader(bytes.NewReader(enc)))
		if err != nil || again != req {
			t.Fatalf("round trip: %+v → %x → %+v, %v", req, enc, again, err)
		}
	})
}

// FuzzUDPHeader: no panic; the payload is a suffix of the datagram.
func FuzzUDPHeader(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 10, 0, 0, 1, 0, 53, 'q'})
	f.Add([]byte{0, 0, 0, 3, 1, 'a', 0, 53})
	f.Fuzz(func(t *testing.T, data []byte) {
		_, payload, err := readUDPHeader(data)
		if err == nil && !bytes.HasSuffix(data, payload) {
			t.Fatalf("payload %x not a suffix of %x", payload, data)
		}
	})
}
