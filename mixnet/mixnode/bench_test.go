package mixnode

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nym-go/nym/mixnet/sphinx"
)

// benchPool holds distinct zero-delay packets for one key, built once and
// grown on demand. Each benchmark run mixes copies with a fresh Mixer (and so
// a fresh replay filter): copies are needed because unwrapping works in
// place, and distinct packets because a repeat would be dropped as a replay.
var benchPool struct {
	sync.Mutex
	key  *sphinx.PrivateKey
	pkts [][]byte
}

func benchPackets(b *testing.B, n int) (*sphinx.PrivateKey, [][]byte) {
	benchPool.Lock()
	defer benchPool.Unlock()
	if benchPool.key == nil {
		benchPool.key = sphinx.GenerateKey()
	}
	if have := len(benchPool.pkts); have < n {
		next := newNode(b)
		more := make([][]byte, max(n, 20_000)-have)
		buildParallel(len(more), func(i int) {
			more[i] = packetVia(b, benchPool.key, 0, next, []byte("benchmark"))
		})
		benchPool.pkts = append(benchPool.pkts, more...)
	}
	copies := make([][]byte, n)
	for i := range copies {
		copies[i] = bytes.Clone(benchPool.pkts[i])
	}
	return benchPool.key, copies
}

// BenchmarkMixerThroughput pushes zero-delay packets through a whole Mixer as
// fast as it takes them and reports packets/s. The bound is the Sphinx unwrap:
// ~1/95 µs ≈ 10,500 packets/s per core. Compare GOMAXPROCS=1 and 2 (-cpu 1,2).
func BenchmarkMixerThroughput(b *testing.B) {
	key, pkts := benchPackets(b, b.N)
	var forwarded atomic.Int64
	done := make(chan struct{})
	m, err := New(Config{
		ReplayCapacity: uint64(max(b.N, 1000)),
		Logger:         slog.New(slog.DiscardHandler),
		Forward: func([sphinx.AddressSize]byte, []byte, bool) {
			if forwarded.Add(1) == int64(b.N) {
				close(done)
			}
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := m.SetKeys(RotationKey{Rotation: 0, Key: key}); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- m.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-stopped; err != nil {
			b.Error(err)
		}
	}()

	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for _, p := range pkts {
		for !m.Submit(p, false) {
			time.Sleep(100 * time.Microsecond) // queue full: let the workers catch up
		}
	}
	select {
	case <-done:
	case <-time.After(time.Minute):
		b.Fatalf("forwarded %d of %d packets", forwarded.Load(), b.N)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "packets/s")
}
