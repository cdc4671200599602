package socks

import (
	"bytes"
	"testing"
)

// FuzzGreeting5: the method list is read without panic, never beyond what
// NMETHODS announced, and encodes back to the bytes it came from.
func FuzzGreeting5(f *testing.F) {
	f.Add([]byte{5, 1, methodNoAuth})
	f.Add([]byte{5, 2, methodNoAuth, methodUserPass})
	f.Add([]byte{5, 0})
	f.Add([]byte{5, 255, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		methods, err := readGreeting5(r)
		if err != nil {
			return
		}
		used := len(data) - r.Len()
		enc := append([]byte{data[0], byte(len(methods))}, methods...)
		if !bytes.Equal(enc, data[:used]) {
			t.Fatalf("greeting %x read as methods %x (%d bytes used)", data, methods, used)
		}
	})
}

// FuzzUserPass: the RFC 1929 sub-negotiation is read without panic, its
// fields bounded by their length bytes, and what it accepts encodes back to
// the bytes it came from.
func FuzzUserPass(f *testing.F) {
	f.Add([]byte{1, 4, 'u', 's', 'e', 'r', 4, 'p', 'a', 's', 's'})
	f.Add([]byte{1, 0, 0})
	f.Add([]byte{2, 1, 'u', 1, 'p'})
	f.Add([]byte{1, 255, 'u'})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		user, pass, err := readUserPass(r)
		if err != nil {
			return
		}
		if len(user) > 255 || len(pass) > 255 {
			t.Fatalf("accepted fields of %d and %d bytes", len(user), len(pass))
		}
		used := len(data) - r.Len()
		enc := append(append([]byte{userPassVersion, byte(len(user))}, user...), byte(len(pass)))
		enc = append(enc, pass...)
		if !bytes.Equal(enc, data[:used]) {
			t.Fatalf("%x read as user %q pass %q (%d bytes used)", data, user, pass, used)
		}
	})
}
