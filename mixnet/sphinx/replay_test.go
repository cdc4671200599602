package sphinx

import (
	"bytes"
	"errors"
	"testing"

	"github.com/nym-go/nym/mixnet/replay"
)

func newFilter(t testing.TB) *replay.Filter {
	t.Helper()
	f, err := replay.New(1000, replay.DefaultFPRate)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestProcessOnceRefusesReplay: the first copy of a packet is processed as
// Process would, the second is refused with ErrReplay and left untouched, at
// a forwarding hop and at a final one.
func TestProcessOnceRefusesReplay(t *testing.T) {
	for _, hops := range []int{2, 1} {
		nodes, route := newRoute(t, hops)
		pkt, err := NewPacket(route, newDest(), []byte("once"), SizeRegular)
		if err != nil {
			t.Fatal(err)
		}
		f := newFilter(t)
		want, err := nodes[0].key.Process(bytes.Clone(pkt))
		if err != nil {
			t.Fatal(err)
		}
		got, err := nodes[0].key.ProcessOnce(bytes.Clone(pkt), f)
		if err != nil {
			t.Fatalf("%d hops: first copy: %v", hops, err)
		}
		if got.Final != want.Final || got.NextHop != want.NextHop || !bytes.Equal(got.Packet, want.Packet) ||
			!bytes.Equal(got.Payload, want.Payload) || got.ReplayTag != want.ReplayTag {
			t.Fatalf("%d hops: ProcessOnce and Process disagree", hops)
		}

		again := bytes.Clone(pkt)
		if _, err := nodes[0].key.ProcessOnce(again, f); !errors.Is(err, ErrReplay) {
			t.Fatalf("%d hops: second copy: err = %v, want ErrReplay", hops, err)
		}
		if !bytes.Equal(again, pkt) {
			t.Fatalf("%d hops: the refused copy was modified", hops)
		}
		// The payload is not under the header MAC: a copy with another
		// payload is the same packet to the filter.
		again[len(again)-1] ^= 1
		if _, err := nodes[0].key.ProcessOnce(again, f); !errors.Is(err, ErrReplay) {
			t.Fatalf("%d hops: copy with a changed payload: err = %v, want ErrReplay", hops, err)
		}

		other, _ := NewPacket(route, newDest(), []byte("once"), SizeRegular)
		if _, err := nodes[0].key.ProcessOnce(other, f); err != nil {
			t.Fatalf("%d hops: another packet: %v", hops, err)
		}
	}
}

// TestProcessOnceGarbageDoesNotPoison: a packet's α followed by a header
// that fails the MAC, sent ahead of the packet, must not record its tag, or
// whoever saw α could have the real packet dropped as a replay.
func TestProcessOnceGarbageDoesNotPoison(t *testing.T) {
	nodes, route := newRoute(t, 2)
	pkt, err := NewPacket(route, newDest(), []byte("real"), SizeRegular)
	if err != nil {
		t.Fatal(err)
	}
	f := newFilter(t)
	for name, at := range map[string]int{"gamma": GroupElement, "beta": GroupElement + MACSize + 7} {
		forged := bytes.Clone(pkt)
		forged[at] ^= 1
		if _, err := nodes[0].key.ProcessOnce(forged, f); !errors.Is(err, ErrBadMAC) {
			t.Fatalf("forged %s: err = %v, want ErrBadMAC", name, err)
		}
	}
	if got := f.Inserted(); got != 0 {
		t.Fatalf("forged headers recorded %d tags", got)
	}
	if _, err := nodes[0].key.ProcessOnce(pkt, f); err != nil {
		t.Fatalf("the real packet after the forgeries: %v", err)
	}
}

// FuzzProcessOnce feeds arbitrary bytes to a node twice. A refusal leaves
// the buffer as it was, and a packet accepted (or refused as a replay) once
// is refused as a replay the second time. One filter serves every input
// (making one costs milliseconds), so an input may already be a replay.
func FuzzProcessOnce(f *testing.F) {
	f.Add(validPacket(f, SizeRegular))
	f.Add(validPacket(f, SizeAck))
	f.Add(make([]byte, AckPacketSize))
	filter, err := replay.New(1_000_000, replay.DefaultFPRate)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		before := bytes.Clone(pkt)
		_, err := fuzzKey.ProcessOnce(pkt, filter)
		if err != nil && !bytes.Equal(pkt, before) {
			t.Fatal("refused packet was modified")
		}
		if err != nil && !errors.Is(err, ErrReplay) {
			return
		}
		again := bytes.Clone(before)
		if _, err := fuzzKey.ProcessOnce(again, filter); !errors.Is(err, ErrReplay) {
			t.Fatalf("second copy: err = %v, want ErrReplay", err)
		}
		if !bytes.Equal(again, before) {
			t.Fatal("refused replay was modified")
		}
	})
}
