package mixnode

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/nym-go/nym/mixnet/replay"
	"github.com/nym-go/nym/mixnet/sphinx"
)

// RotationKey is the node's Sphinx private key for one key rotation.
type RotationKey struct {
	Rotation uint64
	Key      *sphinx.PrivateKey
}

// heldKey is a key in use and the replay tags seen under it.
type heldKey struct {
	rotation uint64
	public   [32]byte
	key      *sphinx.PrivateKey
	replay   *replay.Filter

	// The filter's file, when the Mixer persists filters (see replayStore).
	binding [32]byte // ties the file to public
	path    string   // "" without persistence
	fileMu  sync.Mutex
	dropped bool // under fileMu: the key is gone, its file deleted; save no more
	// savedTags is the filter's count when last loaded or saved (under
	// fileMu): an unchanged count means the file is current, or, at 0, that
	// no file is needed (a missing file loads as an empty filter).
	savedTags uint64
}

// keySet is immutable once published: workers load it with one atomic read
// and may keep using a key that SetKeys has just removed, which is harmless
// (the packet was accepted an instant before the swap).
type keySet struct {
	byParity [2]*heldKey // index: rotation % 2
}

// keyRing holds the current keySet. Readers never lock.
type keyRing struct {
	mu      sync.Mutex // serialises set
	current atomic.Pointer[keySet]
	store   *replayStore
}

// lookup returns the key for a packet of the given rotation parity, or nil.
func (r *keyRing) lookup(odd bool) *heldKey {
	set := r.current.Load()
	if set == nil {
		return nil
	}
	if odd {
		return set.byParity[1]
	}
	return set.byParity[0]
}

// set replaces the held keys with keys. A key already held for the same
// rotation keeps its replay filter; any other gets the one saved for it, or a
// new one, and keys not listed are dropped with their filters and files.
func (r *keyRing) set(keys []RotationKey) (added, removed []uint64, err error) {
	if len(keys) > 2 {
		return nil, nil, fmt.Errorf("mixnode: %d Sphinx keys, at most 2 (one per rotation parity)", len(keys))
	}
	r.mu.Lock()
	defer r.mu.Unlock()

	old := r.current.Load()
	first := old == nil
	if first {
		old = &keySet{}
	}
	next := &keySet{}
	for _, k := range keys {
		if k.Key == nil {
			return nil, nil, fmt.Errorf("mixnode: nil Sphinx key for rotation %d", k.Rotation)
		}
		parity := k.Rotation % 2
		if other := next.byParity[parity]; other != nil {
			return nil, nil, fmt.Errorf("mixnode: Sphinx keys for rotations %d and %d share a parity", other.rotation, k.Rotation)
		}
		pub := k.Key.PublicKey()
		if prev := old.byParity[parity]; prev != nil && prev.rotation == k.Rotation && prev.public == pub {
			next.byParity[parity] = prev
			continue
		}
		held := r.store.newKey(k.Rotation, pub, k.Key)
		if err := r.store.open(held); err != nil {
			return nil, nil, fmt.Errorf("mixnode: replay filter for rotation %d: %w", k.Rotation, err)
		}
		if r.store.prefault {
			held.replay.Prefault() // before the key is published: no packet waits for it
		}
		next.byParity[parity] = held
		added = append(added, k.Rotation)
	}
	r.current.Store(next)
	for parity, prev := range old.byParity {
		if prev != nil && next.byParity[parity] != prev {
			removed = append(removed, prev.rotation)
			r.store.drop(prev)
		}
	}
	// Files of keys no longer held (a node restarted after their rotation
	// ended) would otherwise stay forever; on the first call no save can be
	// running yet, so stale temporary files can go too.
	r.store.prune(next, first)
	return added, removed, nil
}
