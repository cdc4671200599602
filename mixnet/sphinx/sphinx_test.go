package sphinx

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"
	"time"
)

type testNode struct {
	key  *PrivateKey
	addr [AddressSize]byte
}

// newRoute makes n nodes and a route through them with distinct delays.
func newRoute(t testing.TB, n int) ([]testNode, []Hop) {
	t.Helper()
	nodes := make([]testNode, n)
	route := make([]Hop, n)
	for i := range nodes {
		nodes[i].key = GenerateKey()
		rand.Read(nodes[i].addr[:])
		route[i] = Hop{Address: nodes[i].addr, Key: nodes[i].key.PublicKey(), Delay: time.Duration(i+1) * 1234567 * time.Nanosecond}
	}
	return nodes, route
}

func newDest() Destination {
	var d Destination
	rand.Read(d.Address[:])
	rand.Read(d.ID[:])
	return d
}

// walk processes pkt through nodes and checks every hop's routing; it
// returns the last hop's result.
func walk(t *testing.T, nodes []testNode, route []Hop, pkt []byte) Processed {
	t.Helper()
	var p Processed
	for i, nd := range nodes {
		var err error
		p, err = nd.key.Process(pkt)
		if err != nil {
			t.Fatalf("hop %d: %v", i, err)
		}
		if last := i == len(nodes)-1; p.Final != last {
			t.Fatalf("hop %d: Final = %v, want %v", i, p.Final, last)
		}
		if p.Final {
			break
		}
		if p.NextHop != route[i+1].Address {
			t.Fatalf("hop %d: next hop %x, want %x", i, p.NextHop[:4], route[i+1].Address[:4])
		}
		if p.Delay != route[i].Delay {
			t.Fatalf("hop %d: delay %v, want %v", i, p.Delay, route[i].Delay)
		}
		if len(p.Packet) != len(pkt) {
			t.Fatalf("hop %d: packet length %d changed", i, len(p.Packet))
		}
		pkt = p.Packet
	}
	return p
}

func TestRoundTrip(t *testing.T) {
	for _, size := range []Size{SizeRegular, SizeAck, SizeExtended} {
		for hops := 1; hops <= MaxHops; hops++ {
			t.Run(fmt.Sprintf("size%d/hops%d", size, hops), func(t *testing.T) {
				nodes, route := newRoute(t, hops)
				dest := newDest()
				for _, msgLen := range []int{0, 1, int(size) - 1, int(size)} {
					msg := make([]byte, msgLen)
					rand.Read(msg)
					pkt, err := NewPacket(route, dest, msg, size)
					if err != nil {
						t.Fatal(err)
					}
					if len(pkt) != size.PacketLen() {
						t.Fatalf("packet is %d bytes, want %d", len(pkt), size.PacketLen())
					}
					p := walk(t, nodes, route, pkt)
					if p.Destination != dest {
						t.Fatalf("destination %x, want %x", p.Destination, dest)
					}
					got, err := OpenPayload(p.Payload)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got, msg) {
						t.Fatalf("message of %d bytes came out as %d bytes, differing", len(msg), len(got))
					}
				}
			})
		}
	}
}

func TestWireSizes(t *testing.T) {
	if RegularPacketSize != 2413 || AckPacketSize != 386 || ExtendedPacketSize != 8557 || HeaderSize != 348 || SURBSize != 412 {
		t.Fatalf("sizes: regular %d ack %d header %d surb %d", RegularPacketSize, AckPacketSize, HeaderSize, SURBSize)
	}
}

func TestLadderMatchesECDH(t *testing.T) {
	for range 20 {
		a, _ := ecdh.X25519().GenerateKey(rand.Reader)
		b, _ := ecdh.X25519().GenerateKey(rand.Reader)
		want, _ := a.ECDH(b.PublicKey())
		k, err := NewPrivateKey(a.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if pub := k.PublicKey(); !bytes.Equal(pub[:], a.PublicKey().Bytes()) {
			t.Fatalf("public key differs from crypto/ecdh")
		}
		var got, u [32]byte
		copy(u[:], b.PublicKey().Bytes())
		if err := sharedSecret(&got, &k.scalar, &u); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got[:], want) {
			t.Fatalf("ladder %x, ecdh %x", got, want)
		}
	}
}

// Every byte of the header, flipped before any hop, makes that hop refuse the
// packet as unauthenticated: nothing in the header can be changed unseen.
func TestHeaderTamperFailsMAC(t *testing.T) {
	const hops = 4
	nodes, route := newRoute(t, hops)
	pkt, err := NewPacket(route, newDest(), []byte("hello"), SizeRegular)
	if err != nil {
		t.Fatal(err)
	}
	for at := range hops {
		for i := range HeaderSize {
			bad := bytes.Clone(pkt)
			bad[i] ^= 0x80 >> (i % 8)
			before := bytes.Clone(bad)
			_, err := nodes[at].key.Process(bad)
			if !errors.Is(err, ErrBadMAC) {
				t.Fatalf("hop %d, byte %d flipped: err = %v, want ErrBadMAC", at, i, err)
			}
			if !bytes.Equal(bad, before) {
				t.Fatalf("hop %d, byte %d: a refused packet was modified", at, i)
			}
		}
		p, err := nodes[at].key.Process(pkt)
		if err != nil {
			t.Fatal(err)
		}
		pkt = p.Packet
	}
}

// Every byte of the payload, flipped on the way, fails the destination's
// integrity check: the payload is never silently wrong.
func TestPayloadTamperFailsIntegrity(t *testing.T) {
	const hops = 3
	nodes, route := newRoute(t, hops)
	msg := []byte("pay me")
	pkt, err := NewPacket(route, newDest(), msg, SizeRegular)
	if err != nil {
		t.Fatal(err)
	}
	payloadLen := len(pkt) - HeaderSize
	for at := range hops {
		stride := 1
		if at < hops-1 {
			stride = 37 // earlier hops: a sample, the last hop: every byte
		}
		for i := 0; i < payloadLen; i += stride {
			bad := bytes.Clone(pkt)
			bad[HeaderSize+i] ^= 1
			var p Processed
			for j := at; j < hops; j++ {
				p, err = nodes[j].key.Process(bad)
				if err != nil {
					t.Fatalf("tampered payload refused by hop %d's header check: %v", j, err)
				}
				bad = p.Packet
			}
			if got, err := OpenPayload(p.Payload); !errors.Is(err, ErrBadPayload) {
				t.Fatalf("flip at hop %d payload byte %d: got %q, %v; want ErrBadPayload", at, i, got, err)
			}
		}
		p, err := nodes[at].key.Process(pkt)
		if err != nil {
			t.Fatal(err)
		}
		pkt = p.Packet
	}
}

func TestWrongKey(t *testing.T) {
	_, route := newRoute(t, 3)
	pkt, err := NewPacket(route, newDest(), []byte("x"), SizeRegular)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := GenerateKey().Process(pkt); !errors.Is(err, ErrBadMAC) {
		t.Fatalf("err = %v, want ErrBadMAC", err)
	}
}

func TestReplayTag(t *testing.T) {
	nodes, route := newRoute(t, 3)
	pkt, _ := NewPacket(route, newDest(), []byte("x"), SizeRegular)
	a, err := nodes[0].key.Process(bytes.Clone(pkt))
	if err != nil {
		t.Fatal(err)
	}
	b, err := nodes[0].key.Process(bytes.Clone(pkt))
	if err != nil {
		t.Fatal(err)
	}
	if a.ReplayTag != b.ReplayTag {
		t.Fatal("the same packet gave two replay tags")
	}
	other, _ := NewPacket(route, newDest(), []byte("x"), SizeRegular)
	c, err := nodes[0].key.Process(other)
	if err != nil {
		t.Fatal(err)
	}
	if c.ReplayTag == a.ReplayTag {
		t.Fatal("two packets share a replay tag")
	}
	next, err := nodes[1].key.Process(a.Packet)
	if err != nil {
		t.Fatal(err)
	}
	if next.ReplayTag == a.ReplayTag {
		t.Fatal("hops share a replay tag")
	}
}

func TestBadInput(t *testing.T) {
	k := GenerateKey()
	for _, n := range []int{0, 1, HeaderSize - 1, HeaderSize, AckPacketSize - 1, AckPacketSize + 1, RegularPacketSize - 1, RegularPacketSize + 1, 1 << 16} {
		if _, err := k.Process(make([]byte, n)); !errors.Is(err, ErrBadSize) {
			t.Errorf("Process(%d bytes): err = %v, want ErrBadSize", n, err)
		}
	}
	// A zero α is a low-order point.
	if _, err := k.Process(make([]byte, RegularPacketSize)); !errors.Is(err, ErrBadPoint) {
		t.Errorf("zero α: err = %v, want ErrBadPoint", err)
	}
	_, route := newRoute(t, 2)
	cases := []struct {
		name  string
		route []Hop
		msg   int
		size  Size
		want  error
	}{
		{"no hops", nil, 1, SizeRegular, ErrBadRoute},
		{"six hops", make([]Hop, 6), 1, SizeRegular, ErrBadRoute},
		{"too large", route, RegularPayload + 1, SizeRegular, ErrTooLarge},
		{"ack too large", route, AckPayload + 1, SizeAck, ErrTooLarge},
		{"odd size", route, 1, Size(100), ErrBadSize},
		{"negative delay", []Hop{{Key: route[0].Key, Delay: -1}, route[1]}, 1, SizeRegular, ErrBadRoute},
		{"zero node key", []Hop{{}, route[1]}, 1, SizeRegular, ErrBadKey},
	}
	for _, c := range cases {
		if _, err := NewPacket(c.route, newDest(), make([]byte, c.msg), c.size); !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
		}
	}
	var h Header
	var s SURB
	var rk ReplyKeys
	for _, n := range []int{0, 1, HeaderSize - 1, HeaderSize + 1} {
		if err := h.UnmarshalBinary(make([]byte, n)); !errors.Is(err, ErrBadSize) {
			t.Errorf("Header.UnmarshalBinary(%d bytes): %v", n, err)
		}
		if err := s.UnmarshalBinary(make([]byte, n)); !errors.Is(err, ErrBadSize) {
			t.Errorf("SURB.UnmarshalBinary(%d bytes): %v", n, err)
		}
	}
	for _, b := range [][]byte{nil, {0}, {6}, {1, 2, 3}, make([]byte, 1+32+32+1)} {
		if err := rk.UnmarshalBinary(b); !errors.Is(err, ErrBadEncoding) {
			t.Errorf("ReplyKeys.UnmarshalBinary(%d bytes): %v", len(b), err)
		}
	}
	for _, p := range [][]byte{nil, make([]byte, 16), make([]byte, 100)} {
		if _, err := OpenPayload(p); err == nil {
			t.Errorf("OpenPayload(%d zero bytes) succeeded", len(p))
		}
	}
}
