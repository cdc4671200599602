package gateway

import (
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// maxOpsPerCommit bounds one write transaction, so a huge backlog is written
// in several commits rather than one that holds the file for long.
const maxOpsPerCommit = 1024

// opKind says what a writeOp does.
type opKind uint8

const (
	opStore  opKind = iota // put record value under seq
	opDelete               // delete every record with Seq ≤ seq
	opMeta                 // put meta value; seq is the Reserved it holds
)

// writeOp is one change to a client's part of the database. Ops are queued
// under the client's lock and applied in queue order by the one writer
// goroutine, so a client's records are committed in Seq order.
type writeOp struct {
	kind    opKind
	reserve bool // an opMeta that extends the Seq reservation
	// provisional, for an opMeta, is the client's provisional flag when
	// the op was queued; the op writes or deletes the marker to match.
	provisional bool
	queued      bool // went through enqueueLocked, so counted in client.queued
	client      *client
	seq         uint64
	value       []byte

	// Filled in by the transaction, applied to client once it commits.
	freedCount int
	freedBytes int64
}

// enqueueLocked hands op to the writer without blocking. The caller holds
// op.client.mu, which is what lets Close know that nothing is queued after
// it flushes.
func (g *Gateway) enqueueLocked(op *writeOp) bool {
	if g.closed.Load() {
		return false
	}
	select {
	case g.ops <- op:
		op.queued = true
		op.client.queued++
		return true
	default:
		return false
	}
}

// runWriter is the writer goroutine: it commits queued ops in batches, one
// fsync per batch however many ops it holds, and sweeps expired messages.
// When stop closes it commits what is still queued and returns.
func (g *Gateway) runWriter(stop <-chan struct{}) {
	sweep := time.NewTicker(g.cfg.SweepInterval)
	defer sweep.Stop()
	for {
		select {
		case op := <-g.ops:
			g.commit(g.collect(op))
		case <-sweep.C:
			g.sweep()
		case <-stop:
			g.flushOps()
			return
		}
	}
}

// collect gathers first and whatever else is queued, up to maxOpsPerCommit.
func (g *Gateway) collect(first *writeOp) []*writeOp {
	batch := []*writeOp{first}
	for len(batch) < maxOpsPerCommit {
		select {
		case op := <-g.ops:
			batch = append(batch, op)
		default:
			return batch
		}
	}
	return batch
}

// flushOps commits everything queued. Only one goroutine may write at a
// time: the writer, or Close once the writer has stopped.
func (g *Gateway) flushOps() {
	for {
		select {
		case op := <-g.ops:
			g.commit(g.collect(op))
		default:
			return
		}
	}
}

// commit applies batch in one transaction, then tells each client what
// became durable.
//
// Whatever the batch stores beyond MaxStoredBytesTotal is evicted in the
// same transaction (evictOver), so the file never holds more than the cap.
func (g *Gateway) commit(batch []*writeOp) {
	var (
		delta, evictedBytes int64
		evicted             []eviction
	)
	err := g.store.db.Update(func(tx *bolt.Tx) error {
		delta = 0
		clients := tx.Bucket(bucketClients)
		for _, op := range batch {
			op.freedCount, op.freedBytes = 0, 0
			if err := applyOp(clients, op); err != nil {
				return err
			}
			if op.kind == opStore {
				delta += int64(len(op.value))
			}
			delta -= op.freedBytes
		}
		var err error
		evicted, evictedBytes, err = g.evictOver(clients, g.diskBytes+delta)
		return err
	})
	g.metrics.storeCommits.Inc()
	if err != nil {
		g.log.Error("gateway store write failed", "ops", len(batch), "err", err)
	} else {
		g.addDiskBytes(delta - evictedBytes)
	}
	for _, op := range batch {
		g.committed(op, err)
	}
	if err == nil && len(evicted) > 0 {
		g.evicted(evicted)
	}
}

// evicted updates the clients whose records the global cap took. Each
// evicted packet counts as dropped for its client, which is told on its
// next connection.
func (g *Gateway) evicted(all []eviction) {
	var n int
	for _, e := range all {
		cl := e.client
		cl.mu.Lock()
		cl.storedCount -= e.count
		cl.storedBytes -= e.bytes
		cl.dropped += uint64(e.count)
		cl.mu.Unlock()
		n += e.count
	}
	g.metrics.evicted.Add(float64(n))
	g.log.Debug("gateway evicted stored messages: MaxStoredBytesTotal reached", "messages", n, "clients", len(all))
}

// addDiskBytes moves the running total of stored bytes in the database.
// Only the writer goroutine (or Close once it has stopped) calls it.
func (g *Gateway) addDiskBytes(d int64) {
	g.diskBytes += d
	g.metrics.storedBytes.Set(float64(g.diskBytes))
}

func applyOp(clients *bolt.Bucket, op *writeOp) error {
	addr := op.client.addr[:]
	switch op.kind {
	case opStore:
		cb, err := clients.CreateBucketIfNotExists(addr)
		if err != nil {
			return fmt.Errorf("client bucket: %w", err)
		}
		msgs, err := cb.CreateBucketIfNotExists(bucketMsgs)
		if err != nil {
			return fmt.Errorf("msgs bucket: %w", err)
		}
		if err := msgs.Put(seqKey(op.seq), op.value); err != nil {
			return fmt.Errorf("put record: %w", err)
		}
	case opDelete:
		cb := clients.Bucket(addr)
		if cb == nil || cb.Bucket(bucketMsgs) == nil {
			return nil
		}
		c := cb.Bucket(bucketMsgs).Cursor()
		// Seek First again after each Delete: moving a cursor on from a
		// deleted key can skip the next one.
		for k, v := c.First(); len(k) == 8 && binary.BigEndian.Uint64(k) <= op.seq; k, v = c.First() {
			op.freedCount++
			op.freedBytes += int64(len(v))
			if err := c.Delete(); err != nil {
				return fmt.Errorf("delete record: %w", err)
			}
		}
	case opMeta:
		cb, err := clients.CreateBucketIfNotExists(addr)
		if err != nil {
			return fmt.Errorf("client bucket: %w", err)
		}
		if err := cb.Put(keyMeta, op.value); err != nil {
			return fmt.Errorf("put meta: %w", err)
		}
		mark := cb.Delete
		if op.provisional {
			mark = func(k []byte) error { return cb.Put(k, nil) }
		}
		if err := mark(keyProvisional); err != nil {
			return fmt.Errorf("provisional marker: %w", err)
		}
	}
	return nil
}

// committed updates the client's in-memory view after op's transaction ended
// with err.
func (g *Gateway) committed(op *writeOp, err error) {
	cl := op.client
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if op.queued {
		cl.queued--
	}
	switch op.kind {
	case opStore:
		cl.pending--
		if err != nil {
			cl.storedCount--
			cl.storedBytes -= int64(len(op.value))
			g.metrics.drop(dropStoreError)
		} else {
			g.metrics.stored.Inc()
		}
		cl.commits++
		cl.wakeLocked()
	case opDelete:
		if err == nil {
			cl.storedCount -= op.freedCount
			cl.storedBytes -= op.freedBytes
		}
	case opMeta:
		if op.reserve {
			cl.reservePending = false
		}
		if err == nil {
			cl.reserved = max(cl.reserved, op.seq)
		}
	}
}

// sweep runs on the writer goroutine, so nothing else writes meanwhile: it
// deletes expired messages, then forgets idle clients.
func (g *Gateway) sweep() {
	g.sweepExpired()
	g.forgetIdle()
}

// sweepExpired deletes stored messages older than the TTL. Records are in
// arrival order, so each client's scan stops at its first message still in
// date. Unreadable records go too.
func (g *Gateway) sweepExpired() {
	cutoff := g.now().Add(-g.cfg.MessageTTL).UnixNano()
	type freed struct {
		addr  [32]byte
		count int
		bytes int64
	}
	var all []freed
	err := g.store.db.Update(func(tx *bolt.Tx) error {
		all = all[:0] // Update may not retry, but stay correct if it did
		clients := tx.Bucket(bucketClients)
		var addrs [][32]byte
		if err := clients.ForEachBucket(func(k []byte) error {
			if len(k) == 32 {
				addrs = append(addrs, [32]byte(k))
			}
			return nil
		}); err != nil {
			return err
		}
		for _, addr := range addrs {
			cb := clients.Bucket(addr[:])
			msgs := cb.Bucket(bucketMsgs)
			if msgs == nil {
				continue
			}
			f := freed{addr: addr}
			var highSeq uint64
			c := msgs.Cursor()
			for k, v := c.First(); k != nil; k, v = c.First() {
				if storedAt, _, _, err := decodeRecord(v); err == nil && storedAt >= cutoff {
					break
				}
				if len(k) == 8 {
					highSeq = max(highSeq, binary.BigEndian.Uint64(k))
				}
				f.count++
				f.bytes += int64(len(v))
				if err := c.Delete(); err != nil {
					return fmt.Errorf("delete expired record of %s: %w", shortID(addr), err)
				}
			}
			if f.count == 0 {
				continue
			}
			all = append(all, f)
			if err := g.keepMetaAfterExpiry(cb, addr, highSeq); err != nil {
				return fmt.Errorf("meta of %s: %w", shortID(addr), err)
			}
		}
		return nil
	})
	g.metrics.storeCommits.Inc()
	if err != nil {
		g.log.Error("gateway sweep of expired messages failed", "err", err)
		return
	}
	for _, f := range all {
		g.metrics.expired.Add(float64(f.count))
		g.addDiskBytes(-f.bytes)
		cl := g.lookup(f.addr)
		if cl == nil {
			continue
		}
		cl.mu.Lock()
		cl.storedCount -= f.count
		cl.storedBytes -= f.bytes
		cl.mu.Unlock()
	}
	if len(all) > 0 {
		g.log.Debug("gateway expired stored messages", "clients", len(all))
	}
}

// keepMetaAfterExpiry rewrites a client's meta once its records up to
// highSeq expired. Those records were the database's only trace of when the
// client last had something stored, and, were the meta unreadable, of how
// far its numbering went; the meta takes both over, so a restart neither
// forgets the client early nor numbers below a Seq it was given.
func (g *Gateway) keepMetaAfterExpiry(cb *bolt.Bucket, addr [32]byte, highSeq uint64) error {
	var old clientMeta
	err := old.UnmarshalBinary(cb.Get(keyMeta)) // on error, rebuilt from what is known below
	m := old
	m.Reserved = max(m.Reserved, highSeq+1)
	if cl := g.lookup(addr); cl != nil {
		// Memory is ahead of the disk: it saw the stores, and every Seq
		// handed out is below its nextSeq.
		cl.mu.Lock()
		m.LastSeen = max(m.LastSeen, cl.lastSeen)
		m.Reserved = max(m.Reserved, cl.nextSeq)
		cl.mu.Unlock()
	}
	if err == nil && m == old {
		return nil
	}
	return cb.Put(keyMeta, m.value())
}

// forgetIdle deletes the clients that are not connected, have nothing
// stored or queued, and were last seen more than ClientRetention ago, from
// memory and from the database.
//
// Deleting a record cannot lose a message or make one look old:
//   - Only a client with no stored record, and no write queued, goes, and
//     only once the disk agrees it has no record. Only this goroutine
//     writes, so the disk cannot change between that check and the delete.
//   - It is taken out of memory first, under Gateway.mu and its own lock,
//     and marked removed, so nothing is queued for it afterwards: Deliver
//     looks the address up again and finds either nothing (dropped as an
//     unknown client, with no ack, so the sender retransmits) or the new
//     object of a client that has just reconnected.
//   - This runs on the writer goroutine, so the deletion commits before
//     anything a returning client queues.
//   - Numbering: Reserved promises a client never sees a Seq twice. The
//     record holding it is deleted, so the gateway-wide sequence floor is
//     raised above every Seq the client was given, in the same transaction,
//     and a returning client starts there. Clients in fact rely on less:
//     they echo Seq back in Received on the connection it came from, and
//     the gateway honours Received only from the current connection and
//     only up to what it sent on it; the floor keeps the promise anyway, at
//     the cost of eight bytes for all forgotten clients together.
//
// The only thing forgotten is a drop count the client was never told (its
// messages expired at least ClientRetention − MessageTTL ago).
func (g *Gateway) forgetIdle() {
	cutoff := g.now().Add(-g.cfg.ClientRetention).UnixNano()
	idle := func(cl *client) bool {
		return cl.recorded && !cl.removed && cl.conn == nil && cl.sess == nil &&
			cl.storedCount == 0 && cl.pending == 0 && cl.queued == 0 && !cl.reservePending &&
			cl.lastSeen < cutoff
	}
	// Look first under the read lock, so Deliver is not held up while
	// every client is checked; the write lock then re-checks candidates.
	var candidates []*client
	g.mu.RLock()
	for _, cl := range g.clients {
		cl.mu.Lock()
		if idle(cl) {
			candidates = append(candidates, cl)
		}
		cl.mu.Unlock()
	}
	g.mu.RUnlock()
	if len(candidates) == 0 {
		return
	}
	candidates, err := g.store.withoutRecords(candidates)
	if err != nil {
		g.log.Error("gateway cannot check idle clients", "err", err)
		return
	}
	var gone [][32]byte
	g.mu.Lock()
	for _, cl := range candidates {
		cl.mu.Lock()
		if idle(cl) {
			g.forgetLocked(cl)
			gone = append(gone, cl.addr)
		}
		cl.mu.Unlock()
	}
	floor := g.seqFloor
	g.mu.Unlock()
	if len(gone) == 0 {
		return
	}

	err = g.store.db.Update(func(tx *bolt.Tx) error {
		clients := tx.Bucket(bucketClients)
		for _, addr := range gone {
			if clients.Bucket(addr[:]) == nil {
				continue // never reached the disk: its first write failed
			}
			if err := clients.DeleteBucket(addr[:]); err != nil {
				return fmt.Errorf("delete client %s: %w", shortID(addr), err)
			}
		}
		return putSeqFloor(tx, floor)
	})
	g.metrics.storeCommits.Inc()
	if err != nil {
		// Already gone from memory: the records stay on disk until a
		// restart loads them and a later sweep retries. The floor in
		// memory still keeps a returning client's numbering unique.
		g.log.Error("gateway cannot delete idle clients", "clients", len(gone), "err", err)
		return
	}
	g.metrics.clientsForgotten.Add(float64(len(gone)))
	g.log.Debug("gateway forgot idle clients", "clients", len(gone))
}
