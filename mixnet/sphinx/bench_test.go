package sphinx

import (
	"crypto/ecdh"
	"crypto/rand"
	"testing"

	"filippo.io/edwards25519"
)

// The floors: what a hop or a sender cannot avoid paying in scalar
// multiplications. make bench divides the benchmarks below by them.

// BenchmarkFloorX25519 is one variable-base X25519 multiplication with a
// cached crypto/ecdh private key and peer key: the unit of a hop's cost.
func BenchmarkFloorX25519(b *testing.B) {
	priv, _ := ecdh.X25519().GenerateKey(rand.Reader)
	peer, _ := ecdh.X25519().GenerateKey(rand.Reader)
	pub := peer.PublicKey()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := priv.ECDH(pub); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFloorFixedBase is one fixed-base multiplication x·G, which a sender
// pays once per packet for α₀.
func BenchmarkFloorFixedBase(b *testing.B) {
	var rnd [64]byte
	rand.Read(rnd[:])
	var x edwards25519.Scalar
	x.SetUniformBytes(rnd[:])
	b.ReportAllocs()
	for b.Loop() {
		_ = baseMult(&x)
	}
}

// BenchmarkProcess is one forwarding hop of a regular packet: floor is two
// X25519 multiplications (shared secret, blinding of α).
func BenchmarkProcess(b *testing.B) { benchProcess(b, SizeRegular) }

// BenchmarkProcessAck is one forwarding hop of an ack packet: same floor.
func BenchmarkProcessAck(b *testing.B) { benchProcess(b, SizeAck) }

// BenchmarkProcessExtended is a hop of an extended packet (an anonymous-plus
// reply): the same ladders as a regular one, four times the payload.
func BenchmarkProcessExtended(b *testing.B) { benchProcess(b, SizeExtended) }

func benchProcess(b *testing.B, size Size) {
	nodes, route := newRoute(b, 4)
	pkt, err := NewPacket(route, newDest(), make([]byte, int(size)/2), size)
	if err != nil {
		b.Fatal(err)
	}
	work := make([]byte, len(pkt))
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	for b.Loop() {
		copy(work, pkt)
		if _, err := nodes[0].key.Process(work); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCreate builds a regular forward packet over 4 hops. Floor: one
// fixed-base multiplication for α₀ plus one X25519 multiplication per hop for
// its shared secret (blinding factors are combined as scalars, not points).
func BenchmarkCreate(b *testing.B) {
	_, route := newRoute(b, 4)
	dest := newDest()
	msg := make([]byte, RegularPayload)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewPacket(route, dest, msg, SizeRegular); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCreateSURB makes a 4-hop reply block. Same floor as Create.
func BenchmarkCreateSURB(b *testing.B) {
	_, route := newRoute(b, 4)
	dest := newDest()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := NewSURB(route, dest); err != nil {
			b.Fatal(err)
		}
	}
}
