package gateway

import (
	"container/heap"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// eviction is what the global cap took from one client in one commit.
type eviction struct {
	client *client
	count  int
	bytes  int64
}

// evictLowWater is the fraction of MaxStoredBytesTotal that one eviction
// frees beyond the excess (1/64), so a full gateway evicts once per batch of
// stores rather than on every commit.
const evictLowWater = 64

// evictOver deletes stored records, in the writer's transaction, until the
// database holds at most MaxStoredBytesTotal − MaxStoredBytesTotal/64 when
// it would hold total. Fairness: the client with the most stored loses its
// oldest records until it is no larger than the next largest, so heavy
// stores shrink towards each other and small ones are touched only once
// every store is down to their size. A client's size is its in-memory
// storedBytes, which also counts records queued but not yet written; one
// whose remaining records are all still queued is passed over.
func (g *Gateway) evictOver(clients *bolt.Bucket, total int64) ([]eviction, int64, error) {
	limit := g.cfg.MaxStoredBytesTotal
	if total <= limit {
		return nil, 0, nil
	}
	need := total - (limit - limit/evictLowWater)

	var h sizeHeap
	g.mu.RLock()
	for _, cl := range g.clients {
		cl.mu.Lock()
		if cl.storedBytes > 0 && !cl.removed {
			h = append(h, sized{cl: cl, size: cl.storedBytes})
		}
		cl.mu.Unlock()
	}
	g.mu.RUnlock()
	heap.Init(&h)

	byClient := map[*client]*eviction{}
	var freed int64
	for freed < need && h.Len() > 0 {
		top := heap.Pop(&h).(sized)
		var floor int64
		if h.Len() > 0 {
			floor = h[0].size
		}
		ev := byClient[top.cl]
		if ev == nil {
			ev = &eviction{client: top.cl}
			byClient[top.cl] = ev
		}
		n, more, err := evictOldest(clients, ev, floor, need-freed)
		if err != nil {
			return nil, 0, err
		}
		freed += n
		top.size -= n
		if more {
			heap.Push(&h, top)
		}
	}
	out := make([]eviction, 0, len(byClient))
	for _, e := range byClient {
		if e.count > 0 {
			out = append(out, *e)
		}
	}
	return out, freed, nil
}

// evictOldest deletes ev.client's oldest records, at least one, until it
// has freed want bytes or brought the client's size (as the heap had it,
// minus what this round freed before) below floor. It returns the bytes
// freed and whether the client has records left.
func evictOldest(clients *bolt.Bucket, ev *eviction, floor, want int64) (int64, bool, error) {
	cl := ev.client
	cb := clients.Bucket(cl.addr[:])
	if cb == nil || cb.Bucket(bucketMsgs) == nil {
		return 0, false, nil
	}
	cl.mu.Lock()
	size := cl.storedBytes - ev.bytes
	cl.mu.Unlock()
	c := cb.Bucket(bucketMsgs).Cursor()
	var freed int64
	// Seek First again after each Delete: moving a cursor on from a
	// deleted key can skip the next one.
	for k, v := c.First(); k != nil; k, v = c.First() {
		n := int64(len(v))
		if err := c.Delete(); err != nil {
			return freed, false, fmt.Errorf("evict a record of %s: %w", shortID(cl.addr), err)
		}
		ev.count++
		ev.bytes += n
		freed += n
		if size-freed < floor || freed >= want {
			k, _ := c.First()
			return freed, k != nil, nil
		}
	}
	return freed, false, nil
}

// sized is a client and its stored bytes in an eviction round.
type sized struct {
	cl   *client
	size int64
}

// sizeHeap is a max-heap of clients by stored bytes.
type sizeHeap []sized

func (h sizeHeap) Len() int           { return len(h) }
func (h sizeHeap) Less(i, j int) bool { return h[i].size > h[j].size }
func (h sizeHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *sizeHeap) Push(x any)        { *h = append(*h, x.(sized)) }
func (h *sizeHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
