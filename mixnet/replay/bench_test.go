package replay

import (
	"fmt"
	"testing"
)

// BenchmarkReplaySeen measures one test-and-set of a fresh tag: the path every
// honest packet takes. The small filter stays in cache; the default-size one
// shows the cache miss a node really pays.
func BenchmarkReplaySeen(b *testing.B) {
	for _, capacity := range []uint64{100_000, DefaultCapacity} {
		b.Run(fmt.Sprintf("capacity=%d", capacity), func(b *testing.B) {
			f := mustNew(b, capacity, DefaultFPRate)
			src := newTagSource(b)
			tags := make([][32]byte, 1<<16)
			for i := range tags {
				tags[i] = src.next()
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				tag := tags[i&(len(tags)-1)]
				tag[31] ^= byte(i >> 16) // fresh tags beyond the table, same block
				tag[30] ^= byte(i >> 24)
				f.Seen(tag)
			}
		})
	}
}

// BenchmarkReplaySeenParallel shows contention between workers.
func BenchmarkReplaySeenParallel(b *testing.B) {
	f := mustNew(b, DefaultCapacity, DefaultFPRate)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		src := newTagSource(b)
		for pb.Next() {
			f.Seen(src.next())
		}
	})
}
