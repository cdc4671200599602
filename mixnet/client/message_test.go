package client

import (
	"bytes"
	"errors"
	"testing"

	"github.com/nym-go/nym/mixnet/sphinx"
)

func testSURB(t testing.TB) replySURB {
	t.Helper()
	var route []sphinx.Hop
	for i := range 4 {
		k := sphinx.GenerateKey()
		route = append(route, sphinx.Hop{Address: [32]byte{byte(i + 1)}, Key: k.PublicKey()})
	}
	s, _, err := sphinx.NewSURB(route, sphinx.Destination{Address: [32]byte{9}})
	if err != nil {
		t.Fatal(err)
	}
	return replySURB{parity: 1, surb: s}
}

func TestMessageRoundTrip(t *testing.T) {
	s := testSURB(t)
	tag := AnonymousSenderTag{1, 2, 3}
	for _, m := range []message{
		{kind: kindPlain, data: []byte("plain")},
		{kind: kindPlain, data: []byte{}},
		{kind: kindRepliable, tag: tag, surbs: []replySURB{s, s}, data: []byte("hi")},
		{kind: kindRepliable, tag: tag, surbs: []replySURB{}, data: []byte("no surbs")},
		{kind: kindMoreSURBs, tag: tag, surbs: []replySURB{s}},
		{kind: kindReply, data: []byte("reply")},
		{kind: kindSURBRequest, want: 300},
	} {
		b, err := m.appendBinary(nil)
		if err != nil {
			t.Fatalf("kind %d: %v", m.kind, err)
		}
		if len(b) != m.headerLen()+len(m.data) {
			t.Fatalf("kind %d: %d bytes, headerLen says %d", m.kind, len(b), m.headerLen()+len(m.data))
		}
		got, err := parseMessage(b)
		if err != nil {
			t.Fatalf("kind %d: %v", m.kind, err)
		}
		if got.kind != m.kind || got.tag != m.tag || got.want != m.want || !bytes.Equal(got.data, m.data) || len(got.surbs) != len(m.surbs) {
			t.Fatalf("kind %d: round trip gave %+v", m.kind, got)
		}
		for i := range got.surbs {
			if got.surbs[i] != m.surbs[i] {
				t.Fatalf("kind %d: SURB %d changed", m.kind, i)
			}
		}
	}
}

func TestMessageRejects(t *testing.T) {
	s := testSURB(t)
	good, _ := (&message{kind: kindRepliable, tag: AnonymousSenderTag{1}, surbs: []replySURB{s}, data: []byte("x")}).appendBinary(nil)
	more, _ := (&message{kind: kindMoreSURBs, tag: AnonymousSenderTag{1}, surbs: []replySURB{s}}).appendBinary(nil)
	zeroTag := bytes.Clone(good)
	clear(zeroTag[1:17])
	badParity := bytes.Clone(good)
	badParity[19] = 4 // bits 0 (parity) and 1 (extended) are the only ones defined
	for name, b := range map[string][]byte{
		"empty":              nil,
		"unknown kind":       {9, 1, 2},
		"short request":      {byte(kindSURBRequest), 1},
		"long request":       {byte(kindSURBRequest), 1, 2, 3},
		"truncated SURBs":    good[:len(good)-200],
		"no tag":             {byte(kindRepliable), 1, 2},
		"zero tag":           zeroTag,
		"unknown SURB flag":  badParity,
		"trailing on more":   append(bytes.Clone(more), 1),
		"more without SURBs": more[:19],
	} {
		if _, err := parseMessage(b); !errors.Is(err, ErrBadMessage) {
			t.Errorf("%s: parse gave %v, want ErrBadMessage", name, err)
		}
	}
}

func FuzzControl(f *testing.F) {
	s := testSURB(f)
	for _, m := range []message{
		{kind: kindPlain, data: []byte("p")},
		{kind: kindRepliable, tag: AnonymousSenderTag{1}, surbs: []replySURB{s}, data: []byte("r")},
		{kind: kindMoreSURBs, tag: AnonymousSenderTag{1}, surbs: []replySURB{s, s}},
		{kind: kindReply, data: []byte("x")},
		{kind: kindSURBRequest, want: 20},
	} {
		b, _ := m.appendBinary(nil)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseMessage(b)
		if err != nil {
			return
		}
		out, err := m.appendBinary(nil)
		if err != nil {
			t.Fatalf("parsed message does not encode: %v", err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("re-encoded %x, input %x", out, b)
		}
	})
}
