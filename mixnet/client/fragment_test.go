package client

import (
	"bytes"
	"errors"
	"testing"
)

func TestFragmentRoundTrip(t *testing.T) {
	f := Fragment{SetID: 0x0102030405060708, Count: 3, Index: 2, Data: []byte("hello")}
	b, err := f.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{1, 2, 3, 4, 5, 6, 7, 8, 0, 3, 0, 2, 'h', 'e', 'l', 'l', 'o'}
	if !bytes.Equal(b, want) {
		t.Fatalf("wire form %x, want %x", b, want)
	}
	var g Fragment
	if err := g.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if g.SetID != f.SetID || g.Count != f.Count || g.Index != f.Index || !bytes.Equal(g.Data, f.Data) {
		t.Fatalf("round trip: %+v, want %+v", g, f)
	}
}

func TestFragmentRejects(t *testing.T) {
	for _, b := range [][]byte{
		nil,
		make([]byte, FragmentHeaderLen-1),
		{0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0}, // count 0
		{0, 0, 0, 0, 0, 0, 0, 1, 0, 2, 0, 2, 0xff}, // index == count
	} {
		var f Fragment
		if err := f.UnmarshalBinary(b); !errors.Is(err, ErrBadFragment) {
			t.Errorf("UnmarshalBinary(%x) = %v, want ErrBadFragment", b, err)
		}
	}
	if _, err := (&Fragment{Count: 1, Index: 1}).MarshalBinary(); !errors.Is(err, ErrBadFragment) {
		t.Errorf("marshal of index 1 of 1: %v", err)
	}
}

func TestSplitMessage(t *testing.T) {
	msg := bytes.Repeat([]byte("abcdefg"), 1000) // 7000 bytes
	frags, err := splitMessage(42, msg, FragmentCapacity)
	if err != nil {
		t.Fatal(err)
	}
	if want := (len(msg) + FragmentCapacity - 1) / FragmentCapacity; len(frags) != want {
		t.Fatalf("%d fragments, want %d", len(frags), want)
	}
	var joined []byte
	for i, f := range frags {
		if f.SetID != 42 || int(f.Count) != len(frags) || int(f.Index) != i {
			t.Fatalf("fragment %d header %+v", i, f)
		}
		if i < len(frags)-1 && len(f.Data) != FragmentCapacity {
			t.Fatalf("fragment %d carries %d bytes, want full %d", i, len(f.Data), FragmentCapacity)
		}
		joined = append(joined, f.Data...)
	}
	if !bytes.Equal(joined, msg) {
		t.Fatal("fragments do not join back into the message")
	}
	empty, err := splitMessage(1, nil, FragmentCapacity)
	if err != nil || len(empty) != 1 || len(empty[0].Data) != 0 {
		t.Fatalf("empty message: %v %v", empty, err)
	}
	if _, err := splitMessage(1, make([]byte, maxFragments*10+1), 10); !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("oversized message: %v", err)
	}
}

func TestPadding(t *testing.T) {
	for _, n := range []int{0, 1, FragmentCapacity} {
		f := Fragment{SetID: 9, Count: 1, Data: bytes.Repeat([]byte{0}, n)} // zeros: the hard case for unpadding
		pt, err := padPlaintext(&f)
		if err != nil {
			t.Fatal(err)
		}
		if len(pt) != sealedCapacity {
			t.Fatalf("padded to %d bytes, want %d", len(pt), sealedCapacity)
		}
		b, err := unpadPlaintext(pt)
		if err != nil {
			t.Fatal(err)
		}
		var g Fragment
		if err := g.UnmarshalBinary(b); err != nil || len(g.Data) != n {
			t.Fatalf("after padding: %d bytes, %v; want %d", len(g.Data), err, n)
		}
	}
	if _, err := padPlaintext(&Fragment{Count: 1, Data: make([]byte, FragmentCapacity+1)}); err == nil {
		t.Fatal("a fragment over capacity was padded")
	}
}

func FuzzFragment(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0})
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8, 0, 3, 0, 2, 'x'})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var fr Fragment
		if err := fr.UnmarshalBinary(b); err != nil {
			return
		}
		out, err := fr.MarshalBinary()
		if err != nil {
			t.Fatalf("decoded fragment does not encode: %v", err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("re-encoded %x, input %x", out, b)
		}
	})
}
