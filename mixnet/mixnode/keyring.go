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
}

// keySet is immutable once published: workers load it with one atomic read
// and may keep using a key that SetKeys has just removed, which is harmless
// (the packet was accepted an instant before the swap).
type keySet struct {
	byParity [2]*heldKey // index: rotation % 2
}

// keyRing holds the current keySet. Readers never lock.
type keyRing struct {
	mu        sync.Mutex // serialises set
	current   atomic.Pointer[keySet]
	newFilter func() (*replay.Filter, error)
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
// rotation keeps its replay filter; any other gets a new one, and keys not
// listed are dropped with their filters.
func (r *keyRing) set(keys []RotationKey) (added, removed []uint64, err error) {
	if len(keys) > 2 {
		return nil, nil, fmt.Errorf("mixnode: %d Sphinx keys, at most 2 (one per rotation parity)", len(keys))
	}
	r.mu.Lock()
	defer r.mu.Unlock()

	old := r.current.Load()
	if old == nil {
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
		filter, err := r.newFilter()
		if err != nil {
			return nil, nil, fmt.Errorf("mixnode: replay filter for rotation %d: %w", k.Rotation, err)
		}
		next.byParity[parity] = &heldKey{rotation: k.Rotation, public: pub, key: k.Key, replay: filter}
		added = append(added, k.Rotation)
	}
	for parity, prev := range old.byParity {
		if prev != nil && next.byParity[parity] != prev {
			removed = append(removed, prev.rotation)
		}
	}
	r.current.Store(next)
	return added, removed, nil
}
