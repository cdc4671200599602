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

// meter removes peers that used up what their tickets bought. The client
// notices its tunnel going quiet and registers again, paying with new
// tickets (nymvpn's fast mode does on a stale tunnel); WireGuard has no
// message in which to ask for the next ticket ahead of time.
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
		gone := g.quota.over(stats)
		for _, pk := range gone {
			g.peers.remove(pk)
			g.quota.exhausted.Add(1)
			g.log.Debug("peer removed: its ticket's bytes are used up")
		}
		if len(gone) > 0 {
			g.m.peers.Set(float64(g.peers.len()))
		}
	}
}
