package mixnode

import (
	"bytes"
	"log/slog"
	"sync"
	"testing"

	"github.com/nym-go/nym/mixnet/sphinx"
)

// BenchmarkProcessFresh and BenchmarkProcessReplayed take one packet through
// a worker's step (unwrap, replay check, hand-off) with the real replay
// filter: a fresh packet is forwarded (or delivered, at a final hop), a
// replayed one is refused. A replay must cost less than a fresh packet:
// whoever replays packets at a node should not get a whole unwrap per copy.

func BenchmarkProcessFresh(b *testing.B) {
	b.Run("hop=forward", func(b *testing.B) { benchMixerStep(b, false, false) })
	b.Run("hop=final", func(b *testing.B) { benchMixerStep(b, true, false) })
}

func BenchmarkProcessReplayed(b *testing.B) {
	b.Run("hop=forward", func(b *testing.B) { benchMixerStep(b, false, true) })
	b.Run("hop=final", func(b *testing.B) { benchMixerStep(b, true, true) })
}

// finalPool holds distinct packets whose only hop is benchPool's key, like
// benchPool does for forwarding packets.
var finalPool struct {
	sync.Mutex
	pkts [][]byte
}

func benchFinalPackets(b *testing.B, n int) (*sphinx.PrivateKey, [][]byte) {
	key, _ := benchPackets(b, 1) // the shared key
	finalPool.Lock()
	defer finalPool.Unlock()
	if have := len(finalPool.pkts); have < n {
		more := make([][]byte, max(n, 20_000)-have)
		route := []sphinx.Hop{{Address: [32]byte{'g', 'w'}, Key: key.PublicKey()}}
		buildParallel(len(more), func(i int) {
			pkt, err := sphinx.NewPacket(route, sphinx.Destination{Address: [32]byte{'c', 'l', 'i'}}, []byte("benchmark"), sphinx.SizeRegular)
			if err != nil {
				b.Error(err)
			}
			more[i] = pkt
		})
		finalPool.pkts = append(finalPool.pkts, more...)
	}
	copies := make([][]byte, n)
	for i := range copies {
		copies[i] = bytes.Clone(finalPool.pkts[i])
	}
	return key, copies
}

func benchMixerStep(b *testing.B, final, replayed bool) {
	n := b.N
	if replayed {
		n = 1
	}
	var key *sphinx.PrivateKey
	var pkts [][]byte
	if final {
		key, pkts = benchFinalPackets(b, n)
	} else {
		key, pkts = benchPackets(b, n)
	}
	var passed int
	m, err := New(Config{
		ReplayCapacity: 1 << 20,
		Logger:         slog.New(slog.DiscardHandler),
		Forward:        func([sphinx.AddressSize]byte, []byte, bool) { passed++ },
		Deliver:        func(sphinx.Processed) { passed++ },
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := m.SetKeys(RotationKey{Rotation: 0, Key: key}); err != nil {
		b.Fatal(err)
	}

	var work []byte
	if replayed {
		orig := bytes.Clone(pkts[0])
		m.process(inbound{pkt: pkts[0]}) // the first copy passes
		if passed != 1 {
			b.Fatal("the original packet did not pass")
		}
		passed = 0
		pkts[0], work = orig, make([]byte, len(orig))
	}
	b.SetBytes(int64(len(pkts[0])))
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		pkt := pkts[i%len(pkts)]
		if replayed {
			copy(work, pkt) // unwrapping works in place
			pkt = work
		}
		m.process(inbound{pkt: pkt, arrived: m.now()})
	}
	b.StopTimer()
	switch {
	case replayed && passed != 0:
		b.Fatalf("%d replays passed", passed)
	case !replayed && passed != b.N:
		b.Fatalf("%d of %d fresh packets passed", passed, b.N)
	}
}
