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
	kind   opKind
	client *client
	seq    uint64
	value  []byte

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
func (g *Gateway) commit(batch []*writeOp) {
	err := g.store.db.Update(func(tx *bolt.Tx) error {
		clients := tx.Bucket(bucketClients)
		for _, op := range batch {
			op.freedCount, op.freedBytes = 0, 0
			if err := applyOp(clients, op); err != nil {
				return err
			}
		}
		return nil
	})
	g.metrics.storeCommits.Inc()
	if err != nil {
		g.log.Error("gateway store write failed", "ops", len(batch), "err", err)
	}
	for _, op := range batch {
		g.committed(op, err)
	}
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
	}
	return nil
}

// committed updates the client's in-memory view after op's transaction ended
// with err.
func (g *Gateway) committed(op *writeOp, err error) {
	cl := op.client
	cl.mu.Lock()
	defer cl.mu.Unlock()
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
		cl.reservePending = false
		if err == nil {
			cl.reserved = max(cl.reserved, op.seq)
		}
	}
}

// sweep deletes stored messages older than the TTL. Records are in arrival
// order, so each client's scan stops at its first message still in date.
// Unreadable records go too.
func (g *Gateway) sweep() {
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
			msgs := clients.Bucket(addr[:]).Bucket(bucketMsgs)
			if msgs == nil {
				continue
			}
			f := freed{addr: addr}
			c := msgs.Cursor()
			for k, v := c.First(); k != nil; k, v = c.First() {
				if storedAt, _, _, err := decodeRecord(v); err == nil && storedAt >= cutoff {
					break
				}
				f.count++
				f.bytes += int64(len(v))
				if err := c.Delete(); err != nil {
					return fmt.Errorf("delete expired record: %w", err)
				}
			}
			if f.count > 0 {
				all = append(all, f)
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
