package client

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// FuzzReassembler drives a reassembler with a stream of fragments, as any
// sender can make them, and the passing of time. Each step is five bytes:
// set id, count, index, data length, and flags (bit 0: via a SURB; bits 1-2:
// advance the clock by 0, 1 s, 5 s or 11 s and expire). It checks against a
// model: a message is exactly its set's fragments in index order, from one
// origin, returned once; memory stays within bounds.
func FuzzReassembler(f *testing.F) {
	f.Add([]byte{1, 2, 0, 5, 0, 1, 2, 1, 5, 0})
	f.Add([]byte{1, 3, 0, 10, 0, 1, 3, 2, 10, 1, 1, 3, 1, 3, 0, 1, 3, 1, 3, 0})
	f.Add([]byte{2, 1, 0, 9, 0, 2, 1, 0, 9, 6, 2, 1, 0, 9, 0})
	f.Add(bytes.Repeat([]byte{3, 5, 1, 30, 0, 4, 5, 2, 30, 0, 5, 5, 3, 30, 2}, 8))
	const (
		maxMessage = 64
		maxBytes   = 150
		chunk      = 16
		timeout    = 10 * time.Second
	)
	f.Fuzz(func(t *testing.T, steps []byte) {
		r := newReassembler(maxMessage, maxBytes, timeout, chunk)
		now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		// The model: what was accepted into each open set.
		type modelSet struct {
			origin origin
			count  uint16
			parts  map[uint16][]byte
		}
		model := map[uint64]*modelSet{}
		done := map[uint64]bool{}
		for i := 0; i+5 <= len(steps); i += 5 {
			s := steps[i : i+5]
			count := uint16(s[1]%8) + 1
			fr := Fragment{SetID: uint64(s[0] % 6), Count: count, Index: uint16(s[2]) % count}
			fr.Data = bytes.Repeat([]byte{s[0] ^ s[2]}, int(s[3]%(2*chunk)))
			o := origin{viaSURB: s[4]&1 != 0}
			if o.viaSURB {
				o.tag = AnonymousSenderTag{s[0]}
			}
			if adv := (s[4] >> 1) & 3; adv != 0 {
				now = now.Add([]time.Duration{0, time.Second, 5 * time.Second, 11 * time.Second}[adv])
				r.expire(now)
				for id := range model {
					if r.sets[id] == nil {
						delete(model, id) // expired
					}
				}
				for id := range done {
					if _, ok := r.done[id]; !ok {
						delete(done, id)
					}
				}
			}
			// Sets the reassembler evicted are gone from the model too.
			for id := range model {
				if r.sets[id] == nil {
					delete(model, id)
				}
			}

			msg, err := r.add(now, fr, o)
			switch {
			case err != nil:
				if done[fr.SetID] && !errors.Is(err, errDuplicateFragment) {
					t.Fatalf("fragment of a completed set: %v, want a duplicate", err)
				}
			case msg == nil:
				m := model[fr.SetID]
				if m == nil {
					m = &modelSet{origin: o, count: fr.Count, parts: map[uint16][]byte{}}
					model[fr.SetID] = m
				}
				if m.origin != o || m.count != fr.Count {
					t.Fatalf("set %d took a fragment of another origin or count", fr.SetID)
				}
				if _, dup := m.parts[fr.Index]; dup {
					t.Fatalf("set %d took index %d twice", fr.SetID, fr.Index)
				}
				m.parts[fr.Index] = fr.Data
			default:
				if done[fr.SetID] {
					t.Fatalf("set %d completed twice", fr.SetID)
				}
				want := fr.Data
				if fr.Count > 1 {
					m := model[fr.SetID]
					if m == nil || m.origin != o || m.count != fr.Count || len(m.parts) != int(fr.Count)-1 {
						t.Fatalf("set %d completed without its fragments", fr.SetID)
					}
					m.parts[fr.Index] = fr.Data
					want = nil
					for j := range fr.Count {
						want = append(want, m.parts[j]...)
					}
					delete(model, fr.SetID)
				}
				if !bytes.Equal(msg, want) {
					t.Fatalf("set %d reassembled to %x, want %x", fr.SetID, msg, want)
				}
				if int(fr.Count) > r.maxFragments {
					t.Fatalf("a set of %d fragments completed, limit %d", fr.Count, r.maxFragments)
				}
				done[fr.SetID] = true
			}

			held := 0
			for _, ps := range r.sets {
				size := 0
				for _, p := range ps.parts {
					size += len(p)
				}
				if size != ps.size || len(ps.parts) >= int(ps.count) {
					t.Fatalf("a partial set holds %d of %d parts, %d bytes, counted %d", len(ps.parts), ps.count, size, ps.size)
				}
				held += size
			}
			if held != r.bytes {
				t.Fatalf("partial sets hold %d bytes, counted %d", held, r.bytes)
			}
			if r.bytes > maxBytes && len(r.sets) > 1 {
				t.Fatalf("%d bytes in %d partial sets, limit %d", r.bytes, len(r.sets), maxBytes)
			}
		}
	})
}
