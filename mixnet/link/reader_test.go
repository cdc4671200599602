package link

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// stream encodes msgs as the wire does: 2-byte length, then the bytes.
func stream(msgs ...[]byte) []byte {
	var b []byte
	for _, m := range msgs {
		b = binary.BigEndian.AppendUint16(b, uint16(len(m)))
		b = append(b, m...)
	}
	return b
}

func readAll(r io.Reader) ([][]byte, error) {
	mr := newMsgReader(r)
	var out [][]byte
	for {
		m, err := mr.next()
		if err != nil {
			return out, err
		}
		out = append(out, append([]byte(nil), m...))
	}
}

func TestMsgReader(t *testing.T) {
	msgs := [][]byte{{}, {1}, payload(2436, 1), payload(MaxMessageLen, 2), payload(3, 3), payload(MaxMessageLen, 4), payload(9000, 5)}
	wire := stream(msgs...)
	readers := map[string]func() io.Reader{
		"whole":      func() io.Reader { return bytes.NewReader(wire) },
		"one byte":   func() io.Reader { return iotest.OneByteReader(bytes.NewReader(wire)) },
		"half reads": func() io.Reader { return iotest.HalfReader(bytes.NewReader(wire)) },
		"data+EOF":   func() io.Reader { return iotest.DataErrReader(bytes.NewReader(wire)) },
	}
	for name, mk := range readers {
		t.Run(name, func(t *testing.T) {
			got, err := readAll(mk())
			if err != io.EOF {
				t.Fatalf("ended with %v, want io.EOF", err)
			}
			if len(got) != len(msgs) {
				t.Fatalf("got %d messages, want %d", len(got), len(msgs))
			}
			for i := range msgs {
				if !bytes.Equal(got[i], msgs[i]) {
					t.Fatalf("message %d differs", i)
				}
			}
		})
	}
	t.Run("truncated", func(t *testing.T) {
		_, err := readAll(bytes.NewReader(wire[:len(wire)-1]))
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("err = %v, want io.ErrUnexpectedEOF", err)
		}
	})
}

// FuzzMsgReader checks the stream framer against a plain reference parser,
// reading in whole and in one-byte pieces.
func FuzzMsgReader(f *testing.F) {
	f.Add(stream([]byte("a"), payload(300, 1)))
	f.Add([]byte{0xff, 0xff, 1})
	f.Fuzz(func(t *testing.T, wire []byte) {
		var want [][]byte
		rest := wire
		for len(rest) >= 2 {
			n := int(binary.BigEndian.Uint16(rest))
			if len(rest) < 2+n {
				break
			}
			want = append(want, rest[2:2+n])
			rest = rest[2+n:]
		}
		for _, r := range []io.Reader{bytes.NewReader(wire), iotest.OneByteReader(bytes.NewReader(wire))} {
			got, err := readAll(r)
			if len(got) != len(want) {
				t.Fatalf("got %d messages, want %d (err %v)", len(got), len(want), err)
			}
			for i := range want {
				if !bytes.Equal(got[i], want[i]) {
					t.Fatalf("message %d differs", i)
				}
			}
			if (len(rest) == 0) != (err == io.EOF) {
				t.Fatalf("%d trailing bytes ended with %v", len(rest), err)
			}
		}
	})
}
