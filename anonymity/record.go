package anonymity

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// IDOf is the NodeID under which traces name the holder of key: a node's
// identity key, a client's identity key, an exit's router key, or the bytes
// of an internet endpoint (see EndpointID). It is the first 4 bytes of
// SHA-256(key), big-endian, never 0 (0 means "none" in a trace): every
// recorder computes it the same way, so the files of different nodes and
// clients name each other alike. Collisions are negligible at test sizes
// (a birthday bound of about 1e-5 among 300 names).
func IDOf(key []byte) NodeID {
	h := sha256.Sum256(key)
	id := NodeID(binary.BigEndian.Uint32(h[:4]))
	if id == 0 {
		id = 1
	}
	return id
}

// PacketIDOf is the packet id (Truth.Packet) of a frame on a client's link:
// the first 8 bytes of SHA-256 of its payload, big-endian. The client and
// its gateway record the same frame from the same bytes, so their records
// of it share the id, and the client's ground truth (cover or not) joins
// the gateway's events.
func PacketIDOf(payload []byte) uint64 {
	h := sha256.Sum256(payload)
	return binary.BigEndian.Uint64(h[:8])
}

// EndpointID names an internet endpoint seen from an exit: IDOf of the
// address's 4 or 16 bytes followed by the port, big-endian.
func EndpointID(ap netip.AddrPort) NodeID {
	a := ap.Addr().Unmap().AsSlice()
	return IDOf(binary.BigEndian.AppendUint16(a, ap.Port()))
}

// A Recorder appends records to a trace file. It is safe for concurrent
// use: a node's mixer workers, link readers and gateway sessions all record
// into one. A nil *Recorder records nothing, so a hook costs one nil check
// when tracing is off.
//
// Traces are for measurement only: a recorder writes the timing of every
// packet a node handles, which is exactly what a mixnet exists to hide.
type Recorder struct {
	packets atomic.Uint64 // Packet ids handed out

	mu     sync.Mutex
	f      *os.File
	w      *Writer
	err    error // the first write error; later records are dropped
	closed bool
}

// OpenRecorder creates the trace file path (mode 0600) and writes its
// header. It refuses a file that exists already: a restarted node must not
// overwrite a trace that was being measured, nor append to it records of
// another run.
func OpenRecorder(path string) (*Recorder, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("anonymity: creating trace file: %w", err)
	}
	w, err := NewWriter(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return &Recorder{f: f, w: w}, nil
}

// Record appends rec. A zero rec.Time is stamped with the time now, taken
// under the recorder's lock, so such records are in time order in the file.
// Record never fails: the first write error is kept for Close, and records
// after it (or after Close) are dropped.
func (r *Recorder) Record(rec Record) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.err != nil {
		return
	}
	if rec.Time == 0 {
		rec.Time = time.Now().UnixNano()
	}
	r.err = r.w.Write(rec)
}

// Packet returns a new packet id, unique within this recorder and never 0:
// for Truth.Packet, linking a node's In and Out of one packet. A nil
// Recorder returns 0.
func (r *Recorder) Packet() uint64 {
	if r == nil {
		return 0
	}
	return r.packets.Add(1)
}

// Close flushes the records and closes the file. It returns the first
// error of any write, the flush or the close. Closing a nil or closed
// Recorder does nothing.
func (r *Recorder) Close() error {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	err := r.err
	if err == nil {
		err = r.w.Flush()
	}
	return errors.Join(err, r.f.Close())
}
