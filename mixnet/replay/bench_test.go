package replay

import (
	"fmt"
	"runtime/debug"
	"testing"
	"time"
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

// BenchmarkReplaySeenCold fills a new filter of the default size with 40,000
// fresh tags (about what the NodeSockets benchmark's node sees while it is
// timed), as a node does for the first packets under a new Sphinx key.
// Without Prefault most of them take a page's first-touch fault inside Seen;
// with it none does, and the faults are paid up front. ns/op is the whole
// (Prefault included); seen_ns/tag is the packet path's share.
func BenchmarkReplaySeenCold(b *testing.B) {
	src := newTagSource(b)
	tags := make([][32]byte, 40_000)
	for i := range tags {
		tags[i] = src.next()
	}
	for _, prefault := range []bool{false, true} {
		b.Run(fmt.Sprintf("prefault=%v", prefault), func(b *testing.B) {
			var prefaultTime, seenTime time.Duration
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				// Hand the last filter's pages back to the system, or the
				// runtime reuses them already touched.
				debug.FreeOSMemory()
				b.StartTimer()
				f := mustNew(b, DefaultCapacity, DefaultFPRate)
				start := time.Now()
				if prefault {
					f.Prefault()
				}
				mid := time.Now()
				for _, tag := range tags {
					f.Seen(tag)
				}
				prefaultTime += mid.Sub(start)
				seenTime += time.Since(mid)
			}
			b.ReportMetric(float64(seenTime.Nanoseconds())/float64(b.N*len(tags)), "seen_ns/tag")
			b.ReportMetric(float64(prefaultTime.Milliseconds())/float64(b.N), "prefault_ms")
		})
	}
}
