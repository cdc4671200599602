package ipr

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"
)

// FuzzResequencer feeds a resequencer the sequence numbers a sender (or
// someone replaying its packets) could make arrive, with time passing. Each
// step is four bytes: a signed 16-bit offset from the number it waits for,
// a shift for that offset (0..15, so jumps far past the window happen too),
// and the milliseconds to advance the clock (then Expire). It checks that
// no message is released twice, that in-order releases only go forward,
// that the buffer stays bounded, and that every message pushed is accounted
// for: released, dropped as a duplicate or too old, or waiting.
func FuzzResequencer(f *testing.F) {
	step := func(off int16, shift, ms byte) []byte {
		return append(binary.BigEndian.AppendUint16(nil, uint16(off)), shift, ms)
	}
	f.Add(bytes.Join([][]byte{step(0, 0, 0), step(1, 0, 0), step(0, 0, 0), step(-1, 0, 0)}, nil))
	f.Add(bytes.Join([][]byte{step(2, 0, 1), step(1, 0, 1), step(0, 0, 200), step(-2, 0, 0)}, nil))
	f.Add(bytes.Join([][]byte{step(5, 0, 0), step(1, 10, 0), step(-1, 10, 0), step(-3, 0, 0)}, nil))
	f.Add(bytes.Repeat(step(3, 0, 7), 40))
	const maxBuffered = 8
	f.Fuzz(func(t *testing.T, steps []byte) {
		r := NewResequencer[uint64](ResequencerConfig{Timeout: 100 * time.Millisecond, MaxBuffered: maxBuffered})
		now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		released := map[uint64]bool{}
		var pushed, lastInOrder uint64
		anyInOrder := false
		for i := 0; i+4 <= len(steps); i += 4 {
			off := int64(int16(binary.BigEndian.Uint16(steps[i:]))) << (steps[i+2] % 16)
			next := r.Next()
			seq := uint64(int64(next) + off)
			if off < 0 && uint64(-off) > next {
				seq = next - uint64(-off)%(next+1) // stay at or above 0
			}
			now = now.Add(time.Duration(steps[i+3]) * time.Millisecond)
			late := seq < next
			var out []uint64
			release := func(m uint64) { out = append(out, m) }
			r.Push(seq, seq, now, release)
			pushed++
			r.Expire(now, release)
			for j, m := range out {
				if released[m] {
					t.Fatalf("message %d released twice", m)
				}
				released[m] = true
				if late && j == 0 && m == seq {
					continue // a late arrival from a given-up gap goes out at once
				}
				if m < next || (anyInOrder && m <= lastInOrder) {
					t.Fatalf("in-order release of %d after %d (waiting for %d)", m, lastInOrder, next)
				}
				lastInOrder, anyInOrder = m, true
			}
			if r.Buffered() > maxBuffered {
				t.Fatalf("%d messages buffered, limit %d", r.Buffered(), maxBuffered)
			}
			st := r.Stats()
			if st.Released != uint64(len(released)) {
				t.Fatalf("stats say %d released, saw %d", st.Released, len(released))
			}
			if got := st.Released + st.Duplicates + st.TooOld + uint64(r.Buffered()); got != pushed {
				t.Fatalf("%d pushed but %d accounted for: %+v, %d buffered", pushed, got, st, r.Buffered())
			}
			if d, ok := r.Deadline(); ok != (r.Buffered() > 0) || (ok && !d.After(now)) {
				t.Fatalf("deadline %v, %v with %d buffered at %v", d, ok, r.Buffered(), now)
			}
		}
	})
}
