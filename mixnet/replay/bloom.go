package replay

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"os"
	"runtime"
	"sync/atomic"
)

// Block geometry. A block is one 64-byte cache line; each of a tag's k bits
// inside it is named by 9 tag bits.
const (
	blockBits  = 512
	blockWords = blockBits / 64
	blockBytes = blockBits / 8
	indexBits  = 9 // log2(blockBits)
	indexMask  = 1<<indexBits - 1

	// The first 64 tag bits pick the block; the other 192 give at most 21
	// in-block positions of 9 bits.
	perWord   = 64 / indexBits // 7 positions from each 64-bit tag word
	maxHashes = 3 * perWord    // 21

	// lockStripes serialises inserts into the same block (see Seen). Blocks
	// share a stripe by index; 1024 stripes make two workers meeting on one
	// a rare event, and take 4 KiB.
	lockStripes = 1024
)

// A Filter is a fixed-size set of replay tags for one Sphinx key. Its methods
// are safe for concurrent use. The zero value is not usable; call New.
type Filter struct {
	words    []uint64 // blocks × blockWords, read and written atomically
	blocks   uint64
	hashes   int
	capacity uint64
	locks    [lockStripes]atomic.Uint32

	// inserted counts calls of Seen that returned false. Every honest packet
	// adds one, from every worker, so it sits on its own cache line: sharing
	// one with the fields above would make each worker's read of words miss
	// after another worker's increment.
	_        [64]byte
	inserted atomic.Uint64
	_        [56]byte
}

// New returns an empty filter that holds capacity tags with a false-positive
// rate of at most fpRate. Its memory is allocated up front (the operating
// system commits pages as tags land in them, or all at once with
// [Filter.Prefault]) and never grows; see [Filter.Bytes].
func New(capacity uint64, fpRate float64) (*Filter, error) {
	g, err := size(capacity, fpRate)
	if err != nil {
		return nil, err
	}
	return &Filter{
		words:    make([]uint64, g.blocks*blockWords),
		blocks:   g.blocks,
		hashes:   g.hashes,
		capacity: capacity,
	}, nil
}

// Seen reports whether tag was already in the filter, and adds it. Of any
// number of calls with the same tag, concurrent or not, at most one returns
// false: a replay is never accepted. A tag never added returns true with the
// filter's false-positive probability.
//
// It allocates nothing and takes one cache miss.
func (f *Filter) Seen(tag [32]byte) bool {
	blk, mask := f.locate(&tag)
	block := f.words[blk*blockWords : (blk+1)*blockWords : (blk+1)*blockWords]

	// Bits are never cleared, so if all of ours are set the tag was added
	// before (or is a false positive) and no lock is needed.
	if covered(block, &mask) {
		return true
	}

	// Setting bits word by word is not atomic as a whole: two calls with the
	// same tag could each set some bit first and both report a new tag. The
	// stripe lock makes check-and-set one step for the block. Holders keep it
	// for a few nanoseconds, so waiters spin, yielding to the scheduler in
	// case the holder was preempted.
	lock := &f.locks[blk%lockStripes]
	for !lock.CompareAndSwap(0, 1) {
		runtime.Gosched()
	}
	seen := covered(block, &mask)
	if !seen {
		for i, m := range mask {
			if m != 0 {
				atomic.OrUint64(&block[i], m)
			}
		}
	}
	lock.Store(0)
	if !seen {
		f.inserted.Add(1)
	}
	return seen
}

// locate slices tag into a block number and the bits to set in that block.
// The tag is uniform already (see the package documentation), so no hashing.
func (f *Filter) locate(tag *[32]byte) (block uint64, mask [blockWords]uint64) {
	// The high half of tag0 × blocks is uniform in [0, blocks) for a uniform
	// tag0, without the bias or cost of a modulo.
	block, _ = bits.Mul64(binary.LittleEndian.Uint64(tag[0:8]), f.blocks)
	n := 0
	for w := 1; w < 4 && n < f.hashes; w++ {
		v := binary.LittleEndian.Uint64(tag[8*w:])
		for j := 0; j < perWord && n < f.hashes; j++ {
			pos := v & indexMask
			v >>= indexBits
			mask[pos/64] |= 1 << (pos % 64)
			n++
		}
	}
	return block, mask
}

// covered reports whether every bit of mask is set in block.
func covered(block []uint64, mask *[blockWords]uint64) bool {
	for i, m := range mask {
		if atomic.LoadUint64(&block[i])&m != m {
			return false
		}
	}
	return true
}

// Prefault makes the operating system back the whole filter with memory now,
// instead of page by page as tags land in it. Tags land on random pages, so
// until nearly every page has been touched (over 100,000 tags at the default
// size) a fresh tag usually takes a page fault inside Seen, on the packet
// path: about a microsecond on bare metal, up to 50 µs on some virtual
// machines, against about 80 µs for a Sphinx unwrap. A busy node ends up with
// every page resident within minutes anyway; Prefault pays that up front (the
// whole of [Filter.Bytes]), before the filter carries traffic. It changes no
// bits and is safe to call while Seen runs.
func (f *Filter) Prefault() {
	step := os.Getpagesize() / 8
	for i := 0; i < len(f.words); i += step {
		// A write, not a read: reading an untouched page maps the shared
		// zero page and leaves the fault for the first Seen that sets a bit.
		atomic.OrUint64(&f.words[i], 0)
	}
}

// Capacity is the number of tags the filter was sized for.
func (f *Filter) Capacity() uint64 { return f.capacity }

// Inserted is the number of tags added so far: calls of Seen that returned
// false, plus those recorded in the file the filter was loaded from. With
// [Filter.ExpectedFPRate] it tells how full the filter is.
func (f *Filter) Inserted() uint64 { return f.inserted.Load() }

// Bytes is the memory the filter's bits take.
func (f *Filter) Bytes() uint64 { return f.blocks * blockBytes }

// ExpectedFPRate is the false-positive rate once inserted distinct tags are in
// the filter: at most the target at capacity, rising beyond it.
func (f *Filter) ExpectedFPRate(inserted uint64) float64 {
	return falsePositiveRate(float64(inserted)/float64(f.blocks), f.hashes)
}

// String describes the filter's shape, for logs.
func (f *Filter) String() string {
	return fmt.Sprintf("replay filter: %d tags, %d bytes, %d bits set per tag in one of %d blocks of %d bits",
		f.capacity, f.Bytes(), f.hashes, f.blocks, blockBits)
}
