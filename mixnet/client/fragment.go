package client

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Fragment is one piece of a message, sized to fill one packet. Wire form:
//
//	set id  8  big-endian; random per message, shared by its fragments; 0 marks loop cover
//	count   2  big-endian; fragments in the set, 1..65535
//	index   2  big-endian; this fragment's position, 0..count-1
//	data    …  the rest of the packet's plaintext
//
// The data length is not encoded: the packet's own padding marks where it
// ends. A 64-bit random set id lets a receiver that does not know who sent a
// fragment (replies are anonymous) still keep sets apart.
type Fragment struct {
	SetID uint64
	Count uint16
	Index uint16
	Data  []byte
}

// FragmentHeaderLen is the size of a Fragment's header.
const FragmentHeaderLen = 12

// coverSetID marks a loop cover packet's plaintext; no message uses it.
const coverSetID = 0

// ErrBadFragment is wrapped by every Fragment decoding error.
var ErrBadFragment = errors.New("client: malformed fragment")

// AppendBinary appends the fragment's wire form to b.
func (f *Fragment) AppendBinary(b []byte) ([]byte, error) {
	b, err := f.appendHeader(b)
	if err != nil {
		return b, err
	}
	return append(b, f.Data...), nil
}

// appendHeader appends the FragmentHeaderLen bytes before the data.
func (f *Fragment) appendHeader(b []byte) ([]byte, error) {
	if f.Count == 0 || f.Index >= f.Count {
		return b, fmt.Errorf("%w: index %d of %d", ErrBadFragment, f.Index, f.Count)
	}
	b = binary.BigEndian.AppendUint64(b, f.SetID)
	b = binary.BigEndian.AppendUint16(b, f.Count)
	return binary.BigEndian.AppendUint16(b, f.Index), nil
}

// MarshalBinary returns the fragment's wire form.
func (f *Fragment) MarshalBinary() ([]byte, error) {
	return f.AppendBinary(make([]byte, 0, FragmentHeaderLen+len(f.Data)))
}

// UnmarshalBinary decodes a fragment. Data aliases b.
func (f *Fragment) UnmarshalBinary(b []byte) error {
	if len(b) < FragmentHeaderLen {
		return fmt.Errorf("%w: %d bytes, header alone is %d", ErrBadFragment, len(b), FragmentHeaderLen)
	}
	set := binary.BigEndian.Uint64(b)
	count := binary.BigEndian.Uint16(b[8:])
	index := binary.BigEndian.Uint16(b[10:])
	if count == 0 || index >= count {
		return fmt.Errorf("%w: index %d of %d", ErrBadFragment, index, count)
	}
	*f = Fragment{SetID: set, Count: count, Index: index, Data: b[FragmentHeaderLen:]}
	return nil
}

// maxFragments is the most fragments a set may have.
const maxFragments = 1<<16 - 1

// splitMessage cuts msg into fragments of at most chunk bytes of data, all
// with set id setID. An empty message is one empty fragment.
func splitMessage(setID uint64, msg []byte, chunk int) ([]Fragment, error) {
	if chunk <= 0 {
		return nil, fmt.Errorf("client: fragment capacity %d", chunk)
	}
	n := (len(msg) + chunk - 1) / chunk
	if n == 0 {
		n = 1
	}
	if n > maxFragments {
		return nil, fmt.Errorf("%w: %d bytes need %d fragments, limit %d", ErrMessageTooLarge, len(msg), n, maxFragments)
	}
	frags := make([]Fragment, n)
	for i := range frags {
		end := min((i+1)*chunk, len(msg))
		frags[i] = Fragment{SetID: setID, Count: uint16(n), Index: uint16(i), Data: msg[i*chunk : end]}
	}
	return frags, nil
}
