package wggate

import (
	"sync"
	"sync/atomic"
	"time"
)

// meterInterval is how often paid peers' byte counters are read. A peer
// can overrun its quota by what it moves in one interval (at 1 Gbit/s,
// about 125 MB of a 500 MB ticket); reading a dump of every peer each
// second costs little beside the traffic it meters.
const meterInterval = time.Second

// quotas are the bytes each paid peer may move, both directions together,
// counted from when it was added to the device (a renewal with a new
// ticket adds to what it had: the device's counters run on).
type quotas struct {
	// gate orders a paid renewal and the meter's removals: a client that
	// tops up as the meter finds it over must not lose what it just paid
	// for. Taken before mu, and before the peer table's lock.
	gate sync.Mutex

	mu        sync.Mutex
	allowance map[peerKey]uint64
	exhausted atomic.Uint64 // peers removed for running out
}

func newQuotas() *quotas { return &quotas{allowance: make(map[peerKey]uint64)} }

// add gives pk n more bytes.
func (q *quotas) add(pk peerKey, n uint64) {
	q.mu.Lock()
	q.allowance[pk] += n
	q.mu.Unlock()
}

// left is what pk may still move, given the bytes its counters show;
// metered is false for a peer without an allowance.
func (q *quotas) left(pk peerKey, used uint64) (left uint64, metered bool) {
	q.mu.Lock()
	a, ok := q.allowance[pk]
	q.mu.Unlock()
	if !ok {
		return 0, false
	}
	if used >= a {
		return 0, true
	}
	return a - used, true
}

// drop forgets a removed peer: a peer added again starts from zero, as its
// counters do.
func (q *quotas) drop(pk peerKey) {
	q.mu.Lock()
	delete(q.allowance, pk)
	q.mu.Unlock()
}

// over lists the paid peers whose counters passed their allowance.
func (q *quotas) over(stats map[peerKey]peerStat) []peerKey {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []peerKey
	for pk, a := range q.allowance {
		if st, ok := stats[pk]; ok && st.rx+st.tx > a {
			out = append(out, pk)
		}
	}
	return out
}

// meter removes peers that used up what their tickets bought. A client
// learns its allowance from each registration's answer and, counting its
// own bytes, registers the same key again with a new ticket before it runs
// out (nymvpn's fast mode does); one that does not is removed here, and
// its tunnel goes quiet.
func (g *Gateway) meter() {
	defer g.wg.Done()
	tick := time.NewTicker(meterInterval)
	defer tick.Stop()
	for {
		select {
		case <-g.ctx.Done():
			return
		case <-tick.C:
		}
		stats, err := g.peers.stats()
		if err != nil {
			g.log.Warn("metering peers", "err", err)
			continue
		}
		// Under the gate, over reads allowances a renewal may just have
		// raised: the counters read before only lag.
		g.quota.gate.Lock()
		gone := g.quota.over(stats)
		for _, pk := range gone {
			g.peers.remove(pk)
			g.quota.exhausted.Add(1)
			g.log.Debug("peer removed: its ticket's bytes are used up")
		}
		g.quota.gate.Unlock()
		if len(gone) > 0 {
			g.m.peers.Set(float64(g.peers.len()))
		}
	}
}

// allowanceLeft is what a registered peer may still move: its allowance
// less its device counters; 0 when the peer is not metered.
func (g *Gateway) allowanceLeft(pk peerKey) uint64 {
	var used uint64
	if stats, err := g.peers.stats(); err == nil {
		used = stats[pk].rx + stats[pk].tx
	}
	left, metered := g.quota.left(pk, used)
	if !metered {
		return 0
	}
	// 0 means unmetered on the wire: a peer with nothing left hears 1.
	return max(left, 1)
}

// QuotaRemovals counts the peers removed for using up their allowance.
func (g *Gateway) QuotaRemovals() uint64 { return g.quota.exhausted.Load() }
