package replay

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"

	"github.com/nym-go/nym/internal/keyfile"
)

// A filter on disk, so that a node restarted while its Sphinx key is still
// valid does not forget the tags it has seen (a restart would otherwise let an
// attacker replay every packet once and watch where it goes). All integers are
// little-endian:
//
//	offset  size  field
//	     0     8  magic "NYMRPLY\x00"
//	     8     4  version, 1
//	    12     4  k: bits set per tag inside its block
//	    16     8  number of 512-bit blocks
//	    24     8  tags inserted when the file was written
//	    32    32  binding: a value the caller ties the file to (the mixnode
//	              uses a hash of the Sphinx public key), so that a file is
//	              never loaded under another key
//	    64     …  the bit array: blocks × 8 words of 64 bits
//	   end    32  SHA-256 of everything before it
//
// The checksum is a trailer rather than a header field so that the body can
// be streamed in one pass: a filter in use changes while it is written, and a
// second pass to compute the checksum first would see different bits.
//
// The geometry (k and blocks) is not taken from the file: the caller gives the
// capacity and false-positive rate, which determine it, and a file of another
// geometry is refused. A bad header therefore never makes Load allocate more
// than the configuration asked for.
const (
	fileVersion    = 1
	fileHeaderSize = 64
	fileSumSize    = sha256.Size
	// chunkWords is how many words Encode copies and Decode reads at a time:
	// 64 KiB, so neither ever holds a second copy of the bit array.
	chunkWords = 8192
)

var fileMagic = [8]byte{'N', 'Y', 'M', 'R', 'P', 'L', 'Y', 0}

// ErrInvalidFile is wrapped by every error that says a file's content cannot
// be loaded (as opposed to an error reading it). Test with errors.Is.
var ErrInvalidFile = errors.New("replay: invalid filter file")

// The ways a file is refused; each wraps ErrInvalidFile.
var (
	ErrMagic     = fmt.Errorf("%w: not a replay filter file", ErrInvalidFile)
	ErrVersion   = fmt.Errorf("%w: unsupported version", ErrInvalidFile)
	ErrBinding   = fmt.Errorf("%w: bound to another key", ErrInvalidFile)
	ErrGeometry  = fmt.Errorf("%w: filter geometry differs from the configured capacity and false-positive rate", ErrInvalidFile)
	ErrChecksum  = fmt.Errorf("%w: checksum mismatch", ErrInvalidFile)
	ErrTruncated = fmt.Errorf("%w: truncated", ErrInvalidFile)
	ErrTrailing  = fmt.Errorf("%w: data after the checksum", ErrInvalidFile)
)

// fileHeader is the fixed header, decoded.
type fileHeader struct {
	version  uint32
	hashes   uint32
	blocks   uint64
	inserted uint64
	binding  [32]byte
}

func (h *fileHeader) marshal() [fileHeaderSize]byte {
	var b [fileHeaderSize]byte
	copy(b[0:8], fileMagic[:])
	binary.LittleEndian.PutUint32(b[8:], h.version)
	binary.LittleEndian.PutUint32(b[12:], h.hashes)
	binary.LittleEndian.PutUint64(b[16:], h.blocks)
	binary.LittleEndian.PutUint64(b[24:], h.inserted)
	copy(b[32:64], h.binding[:])
	return b
}

// unmarshalHeader decodes and checks what can be checked without the
// caller's configuration: magic and version.
func unmarshalHeader(b []byte) (fileHeader, error) {
	var h fileHeader
	if len(b) < fileHeaderSize {
		return h, ErrTruncated
	}
	if !bytes.Equal(b[0:8], fileMagic[:]) {
		return h, ErrMagic
	}
	h.version = binary.LittleEndian.Uint32(b[8:])
	if h.version != fileVersion {
		return h, fmt.Errorf("%w %d (want %d)", ErrVersion, h.version, fileVersion)
	}
	h.hashes = binary.LittleEndian.Uint32(b[12:])
	h.blocks = binary.LittleEndian.Uint64(b[16:])
	h.inserted = binary.LittleEndian.Uint64(b[24:])
	copy(h.binding[:], b[32:64])
	return h, nil
}

// Encode writes the filter to w in the file format above, tied to binding,
// and returns the bytes written. It is safe while other goroutines call Seen:
// bits are copied with atomic loads, 64 KiB at a time. The copy is not one
// instant's snapshot, so a tag inserted during the call may be missing from
// it, whole or in part; that tag alone could be replayed once after a restart
// from this copy. The mixer's final save runs after its workers have stopped,
// so only periodic saves (which the next one supersedes) have this gap.
func (f *Filter) Encode(w io.Writer, binding [32]byte) (int64, error) {
	sum := sha256.New()
	cw := &countWriter{w: io.MultiWriter(w, sum)}
	// Read the count before the bits: tags added in between are then in the
	// bits but not the count, so the count errs low, never high.
	h := fileHeader{
		version:  fileVersion,
		hashes:   uint32(f.hashes),
		blocks:   f.blocks,
		inserted: f.inserted.Load(),
		binding:  binding,
	}
	hdr := h.marshal()
	if _, err := cw.Write(hdr[:]); err != nil {
		return cw.n, fmt.Errorf("replay: write header: %w", err)
	}
	buf := make([]byte, 8*chunkWords)
	for off := 0; off < len(f.words); off += chunkWords {
		words := f.words[off:min(off+chunkWords, len(f.words))]
		for i := range words {
			binary.LittleEndian.PutUint64(buf[8*i:], atomic.LoadUint64(&words[i]))
		}
		if _, err := cw.Write(buf[:8*len(words)]); err != nil {
			return cw.n, fmt.Errorf("replay: write bits: %w", err)
		}
	}
	n, err := w.Write(sum.Sum(nil))
	cw.n += int64(n)
	if err != nil {
		return cw.n, fmt.Errorf("replay: write checksum: %w", err)
	}
	return cw.n, nil
}

// countWriter counts the bytes written through it.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Decode reads a filter written by Encode with the same binding, for a filter
// of the given capacity and false-positive rate (the arguments of New). It
// refuses, with an error wrapping ErrInvalidFile and the specific reason, a
// file that is not a filter, of another version, bound to something else, of
// another geometry, truncated, followed by more data, or whose checksum does
// not match. The body is read in 64 KiB chunks straight into the new filter.
func Decode(r io.Reader, binding [32]byte, capacity uint64, fpRate float64) (*Filter, error) {
	g, err := size(capacity, fpRate)
	if err != nil {
		return nil, err
	}
	return decode(r, binding, capacity, g)
}

// decode is Decode for a geometry already computed: sizing takes milliseconds,
// which the fuzz target should not pay per input.
func decode(r io.Reader, binding [32]byte, capacity uint64, g geometry) (*Filter, error) {
	sum := sha256.New()
	tr := io.TeeReader(r, sum)
	var hdr [fileHeaderSize]byte
	if _, err := io.ReadFull(tr, hdr[:]); err != nil {
		return nil, readErr("header", err)
	}
	h, err := unmarshalHeader(hdr[:])
	if err != nil {
		return nil, err
	}
	if h.binding != binding {
		return nil, ErrBinding
	}
	if h.blocks != g.blocks || h.hashes != uint32(g.hashes) {
		return nil, fmt.Errorf("%w: file has %d blocks and k=%d, configuration gives %d and k=%d",
			ErrGeometry, h.blocks, h.hashes, g.blocks, g.hashes)
	}

	// Only now, with the size known to be the configured one, allocate.
	f := &Filter{
		words:    make([]uint64, g.blocks*blockWords),
		blocks:   g.blocks,
		hashes:   g.hashes,
		capacity: capacity,
	}
	buf := make([]byte, 8*chunkWords)
	for off := 0; off < len(f.words); off += chunkWords {
		words := f.words[off:min(off+chunkWords, len(f.words))]
		b := buf[:8*len(words)]
		if _, err := io.ReadFull(tr, b); err != nil {
			return nil, readErr("bits", err)
		}
		// Storing only non-zero words leaves untouched pages uncommitted,
		// as in a new filter: a lightly used filter costs little memory
		// after a restart too.
		if allZero(b) {
			continue
		}
		for i := range words {
			if v := binary.LittleEndian.Uint64(b[8*i:]); v != 0 {
				words[i] = v
			}
		}
	}
	want := sum.Sum(nil)
	var got [fileSumSize]byte
	if _, err := io.ReadFull(r, got[:]); err != nil {
		return nil, readErr("checksum", err)
	}
	if !bytes.Equal(got[:], want) {
		return nil, ErrChecksum
	}
	var extra [1]byte
	switch n, err := io.ReadFull(r, extra[:]); {
	case n > 0:
		return nil, ErrTrailing
	case err != io.EOF:
		return nil, fmt.Errorf("replay: read after checksum: %w", err)
	}
	f.inserted.Store(h.inserted)
	return f, nil
}

// readErr turns a short read into ErrTruncated and wraps anything else.
func readErr(what string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w (in the %s)", ErrTruncated, what)
	}
	return fmt.Errorf("replay: read %s: %w", what, err)
}

// Save writes the filter to path, atomically (keyfile.Replace): it writes a
// temporary file in the same directory (mode 0600), syncs it, renames it over
// path and syncs the directory, so that a crash at any moment leaves either
// the old file or the new one, never half of one. Like Encode it is safe
// during Seen.
func (f *Filter) Save(path string, binding [32]byte) error {
	err := keyfile.Replace(path, func(tmp *os.File) error {
		sw := &sparseWriter{f: tmp}
		if _, err := f.Encode(sw, binding); err != nil {
			return err
		}
		return sw.finish()
	})
	if err != nil {
		return fmt.Errorf("replay: save %s: %w", path, err)
	}
	return nil
}

// TempInfix follows path in the name of Save's temporary file, then a random
// string. A crash can leave such a file behind; it can be deleted.
const TempInfix = keyfile.TempInfix

// Load reads a filter saved by Save with the same binding, for the given
// capacity and false-positive rate; see Decode for what it refuses. A missing
// file gives an error wrapping os.ErrNotExist.
func Load(path string, binding [32]byte, capacity uint64, fpRate float64) (*Filter, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("replay: load: %w", err)
	}
	defer file.Close()
	f, err := Decode(file, binding, capacity, fpRate)
	if err != nil {
		return nil, fmt.Errorf("replay: load %s: %w", path, err)
	}
	return f, nil
}

// sparseWriter skips all-zero chunks of a file instead of writing them,
// leaving holes that read back as zeros. Most of a filter stays zero for much
// of its key's life (and for all of it on a quiet node), so the file then
// takes little disk and its save little I/O.
type sparseWriter struct {
	f    *os.File
	hole int64 // zero bytes skipped and not yet seeked over
}

func (s *sparseWriter) Write(p []byte) (int, error) {
	// Small writes (header, checksum) are not worth a hole.
	if len(p) >= 4096 && allZero(p) {
		s.hole += int64(len(p))
		return len(p), nil
	}
	if err := s.seekHole(); err != nil {
		return 0, err
	}
	return s.f.Write(p)
}

func (s *sparseWriter) seekHole() error {
	if s.hole == 0 {
		return nil
	}
	if _, err := s.f.Seek(s.hole, io.SeekCurrent); err != nil {
		return err
	}
	s.hole = 0
	return nil
}

// finish extends the file over a hole at its end, which no write followed.
func (s *sparseWriter) finish() error {
	if s.hole == 0 {
		return nil
	}
	end, err := s.f.Seek(s.hole, io.SeekCurrent)
	if err != nil {
		return err
	}
	s.hole = 0
	return s.f.Truncate(end)
}

// zeroChunk is compared against: bytes.Equal is assembly, several times
// faster than a loop (and not slowed by the race detector's instrumentation).
var zeroChunk [8 * chunkWords]byte

// allZero reports whether p, at most a chunk long, is all zero.
func allZero(p []byte) bool { return bytes.Equal(p, zeroChunk[:len(p)]) }
