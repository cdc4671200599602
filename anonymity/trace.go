package anonymity

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// NodeID names a node, client or exit-side flow as the observer sees it
// (an address mapped to a small number by whoever writes the trace).
type NodeID uint32

// Role is a node's public role, known to any observer from the directory.
type Role uint8

// Roles. RoleClient is used for events recorded at a client itself; client
// links are normally recorded at the gateway end.
const (
	RoleClient Role = iota + 1
	RoleGateway
	RoleMix
	RoleExit
)

// Dir is the direction of an event at its node.
type Dir uint8

// Directions.
const (
	In Dir = iota + 1
	Out
)

// Event is what a global passive observer sees of one packet at one node or
// link end. Attacks and entropy computations take only Events.
type Event struct {
	Time int64  // Unix nanoseconds
	Node NodeID // where the event was seen
	Peer NodeID // the other end of the link: previous hop for In, next hop for Out
	Size uint32 // bytes on the wire
	Role Role   // Node's role
	Dir  Dir
}

// Truth is the ground truth of a record: for scoring an attack, never an
// input to one.
type Truth struct {
	Packet uint64 // links a node's In and Out of the same packet; 0 if unknown
	Sender NodeID // the client that really sent the packet (or owns the exit flow)
	Cover  bool   // the packet is cover traffic
}

// Record is one line of a trace: the observer's event and the ground truth.
type Record struct {
	Event
	Truth Truth
}

const (
	// RecordLen is the encoded length of a Record.
	RecordLen = eventLen + truthLen
	eventLen  = 8 + 4 + 4 + 4 + 1 + 1
	truthLen  = 8 + 4 + 1

	flagCover = 1 << 0

	// Version is the trace file format's version.
	Version   = 1
	magic     = "NYMTRACE"
	headerLen = len(magic) + 2 + 2
)

var errCorrupt = errors.New("anonymity: corrupt trace")

// AppendBinary appends r's encoding to b. It never fails.
func (r Record) AppendBinary(b []byte) ([]byte, error) {
	b = binary.BigEndian.AppendUint64(b, uint64(r.Time))
	b = binary.BigEndian.AppendUint32(b, uint32(r.Node))
	b = binary.BigEndian.AppendUint32(b, uint32(r.Peer))
	b = binary.BigEndian.AppendUint32(b, r.Size)
	b = append(b, byte(r.Role), byte(r.Dir))
	b = binary.BigEndian.AppendUint64(b, r.Truth.Packet)
	b = binary.BigEndian.AppendUint32(b, uint32(r.Truth.Sender))
	var flags byte
	if r.Truth.Cover {
		flags |= flagCover
	}
	return append(b, flags), nil
}

// UnmarshalBinary reads one record. It checks the length, role, direction
// and flags, so damaged bytes give an error, never a panic; r is then left
// as it was.
func (r *Record) UnmarshalBinary(b []byte) error {
	if len(b) != RecordLen {
		return fmt.Errorf("%w: record of %d bytes, want %d", errCorrupt, len(b), RecordLen)
	}
	role, dir, flags := Role(b[20]), Dir(b[21]), b[34]
	if role < RoleClient || role > RoleExit {
		return fmt.Errorf("%w: role %d", errCorrupt, role)
	}
	if dir != In && dir != Out {
		return fmt.Errorf("%w: direction %d", errCorrupt, dir)
	}
	if flags&^flagCover != 0 {
		return fmt.Errorf("%w: flags %#x", errCorrupt, flags)
	}
	*r = Record{
		Event: Event{
			Time: int64(binary.BigEndian.Uint64(b[0:])),
			Node: NodeID(binary.BigEndian.Uint32(b[8:])),
			Peer: NodeID(binary.BigEndian.Uint32(b[12:])),
			Size: binary.BigEndian.Uint32(b[16:]),
			Role: role,
			Dir:  dir,
		},
		Truth: Truth{
			Packet: binary.BigEndian.Uint64(b[22:]),
			Sender: NodeID(binary.BigEndian.Uint32(b[30:])),
			Cover:  flags&flagCover != 0,
		},
	}
	return nil
}

// Writer writes a trace file: the header, then records.
type Writer struct {
	w   *bufio.Writer
	buf []byte
}

// NewWriter writes the header to w and returns a Writer for the records.
// Call Flush when done.
func NewWriter(w io.Writer) (*Writer, error) {
	bw := bufio.NewWriter(w)
	h := make([]byte, 0, headerLen)
	h = append(h, magic...)
	h = binary.BigEndian.AppendUint16(h, Version)
	h = binary.BigEndian.AppendUint16(h, RecordLen)
	if _, err := bw.Write(h); err != nil {
		return nil, fmt.Errorf("anonymity: writing trace header: %w", err)
	}
	return &Writer{w: bw, buf: make([]byte, 0, RecordLen)}, nil
}

// Write appends one record.
func (w *Writer) Write(r Record) error {
	w.buf, _ = r.AppendBinary(w.buf[:0])
	if _, err := w.w.Write(w.buf); err != nil {
		return fmt.Errorf("anonymity: writing trace record: %w", err)
	}
	return nil
}

// Flush writes buffered records to the underlying writer.
func (w *Writer) Flush() error {
	if err := w.w.Flush(); err != nil {
		return fmt.Errorf("anonymity: flushing trace: %w", err)
	}
	return nil
}

// ReadTrace reads a whole trace file. A file cut short inside a record is
// an error: a recorder that died mid-write must not pass for a full trace.
func ReadTrace(r io.Reader) ([]Record, error) {
	br := bufio.NewReader(r)
	h := make([]byte, headerLen)
	if _, err := io.ReadFull(br, h); err != nil {
		return nil, fmt.Errorf("%w: header: %v", errCorrupt, err)
	}
	if string(h[:len(magic)]) != magic {
		return nil, fmt.Errorf("%w: bad magic", errCorrupt)
	}
	if v := binary.BigEndian.Uint16(h[8:]); v != Version {
		return nil, fmt.Errorf("%w: version %d, want %d", errCorrupt, v, Version)
	}
	if n := binary.BigEndian.Uint16(h[10:]); n != RecordLen {
		return nil, fmt.Errorf("%w: record length %d, want %d", errCorrupt, n, RecordLen)
	}
	var out []Record
	b := make([]byte, RecordLen)
	for i := 0; ; i++ {
		if _, err := io.ReadFull(br, b); err == io.EOF {
			return out, nil
		} else if err != nil {
			return nil, fmt.Errorf("%w: record %d: %v", errCorrupt, i, err)
		}
		var rec Record
		if err := rec.UnmarshalBinary(b); err != nil {
			return nil, fmt.Errorf("record %d: %w", i, err)
		}
		out = append(out, rec)
	}
}

// Events returns the observer's part of records, dropping the ground truth:
// the only view an analysis gets.
func Events(records []Record) []Event {
	ev := make([]Event, len(records))
	for i, r := range records {
		ev[i] = r.Event
	}
	return ev
}
