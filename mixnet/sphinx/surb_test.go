package sphinx

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"
)

func TestSURBRoundTrip(t *testing.T) {
	for _, size := range []Size{SizeRegular, SizeAck, SizeExtended} {
		for hops := 1; hops <= MaxHops; hops++ {
			nodes, route := newRoute(t, hops)
			dest := newDest()
			surb, keys, err := NewSURB(route, dest)
			if err != nil {
				t.Fatal(err)
			}
			// The SURB and the keys cross a wire and a disk.
			wire, _ := surb.MarshalBinary()
			if len(wire) != SURBSize {
				t.Fatalf("SURB is %d bytes, want %d", len(wire), SURBSize)
			}
			var held SURB
			if err := held.UnmarshalBinary(wire); err != nil {
				t.Fatal(err)
			}
			kb, _ := keys.MarshalBinary()
			var kept ReplyKeys
			if err := kept.UnmarshalBinary(kb); err != nil {
				t.Fatal(err)
			}
			if held.FirstHop != route[0].Address {
				t.Fatal("SURB first hop is not the route's first node")
			}

			msg := make([]byte, int(size)/2)
			rand.Read(msg)
			pkt, err := held.Packet(msg, size)
			if err != nil {
				t.Fatal(err)
			}
			p := walk(t, nodes, route, pkt)
			if p.Destination != dest {
				t.Fatal("reply delivered to the wrong destination")
			}
			// The last hop cannot read a reply: only the creator's keys open it.
			if _, err := OpenPayload(bytes.Clone(p.Payload)); err == nil {
				t.Fatal("a reply payload opened without the reply keys")
			}
			got, err := kept.Open(p.Payload)
			if err != nil {
				t.Fatalf("hops %d size %d: %v", hops, size, err)
			}
			if !bytes.Equal(got, msg) {
				t.Fatal("reply message differs")
			}
		}
	}
}

func TestSURBReplyTamper(t *testing.T) {
	nodes, route := newRoute(t, 3)
	surb, keys, err := NewSURB(route, newDest())
	if err != nil {
		t.Fatal(err)
	}
	pkt, _ := surb.Packet([]byte("reply"), SizeRegular)
	for i := HeaderSize; i < len(pkt); i += 101 {
		bad := bytes.Clone(pkt)
		bad[i] ^= 4
		var p Processed
		for _, nd := range nodes {
			if p, err = nd.key.Process(bad); err != nil {
				t.Fatal(err)
			}
			bad = p.Packet
		}
		k := keys
		if _, err := k.Open(p.Payload); !errors.Is(err, ErrBadPayload) {
			t.Fatalf("byte %d flipped: err = %v, want ErrBadPayload", i, err)
		}
	}
}
