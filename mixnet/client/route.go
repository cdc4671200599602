package client

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/sphinx"
)

// routeHops is the length of every route: three mixes and a gateway.
const routeHops = 4

// ErrNoRoute is wrapped when the topology cannot give a route: a layer
// without usable nodes, or a gateway it does not list.
var ErrNoRoute = errors.New("client: no route")

// route is one path through the network for one packet.
type route struct {
	hops   [routeHops]sphinx.Hop
	parity uint8         // key-rotation parity of every key in hops
	delay  time.Duration // sum of the mixes' delays
}

// routes picks routes from the current topology. (Not "router": that is
// the exit's, in ipr.)
type routes struct {
	topo     atomic.Pointer[directory.Topology]
	rnd      *randomSource
	hopDelay time.Duration
	health   nodeHealth
	// own is our gateway as last listed. A gateway that loses its role
	// may still serve us, and our acks and SURBs must still reach it.
	own atomic.Pointer[directory.Node]
}

// newRoute picks one mix per layer and ends at gateway, drawing a delay for
// each mix.
func (r *routes) newRoute(gateway directory.Key) (route, error) {
	t := r.topo.Load()
	if t == nil {
		return route{}, fmt.Errorf("%w: no topology yet", ErrNoRoute)
	}
	var rt route
	rt.parity = uint8(t.Rotation & 1)
	for l := range 3 {
		n, err := r.pick(t.Layers[l], t.Rotation)
		if err != nil {
			return route{}, fmt.Errorf("%w: mix layer %d: %v", ErrNoRoute, l+1, err)
		}
		d := r.rnd.exp(r.hopDelay)
		rt.hops[l] = sphinx.Hop{Address: n.Identity, Key: n.key, Delay: d}
		rt.delay += d
	}
	gw, ok := t.NodeByIdentity(gateway)
	if !ok {
		own := r.own.Load()
		if own == nil || own.Identity != gateway {
			return route{}, fmt.Errorf("%w: gateway %s is not in the topology of epoch %d", ErrNoRoute, gateway, t.Epoch)
		}
		gw = *own
	}
	key, ok := gw.SphinxKeyFor(t.Rotation)
	if !ok {
		return route{}, fmt.Errorf("%w: gateway %s has no Sphinx key for rotation %d", ErrNoRoute, gateway, t.Rotation)
	}
	rt.hops[3] = sphinx.Hop{Address: gw.Identity, Key: key}
	return rt, nil
}

// knows reports, as an error, whether a route can end at gateway: the
// topology lists it (or it is our own). It draws nothing and builds nothing.
func (r *routes) knows(gateway directory.Key) error {
	t := r.topo.Load()
	if t == nil {
		return fmt.Errorf("%w: no topology yet", ErrNoRoute)
	}
	if _, ok := t.NodeByIdentity(gateway); ok {
		return nil
	}
	if own := r.own.Load(); own != nil && own.Identity == gateway {
		return nil
	}
	return fmt.Errorf("%w: gateway %s is not in the topology of epoch %d", ErrNoRoute, gateway, t.Epoch)
}

type candidate struct {
	Identity directory.Key
	key      directory.Key
}

// pick chooses a node of one layer at random, weighted by its performance and
// by how recently packets through it went unacknowledged.
func (r *routes) pick(nodes []directory.Node, rotation uint64) (candidate, error) {
	var total float64
	// A layer rarely lists more than a few dozen mixes: weigh them on the
	// stack, so that a route costs no allocation.
	var stack [64]float64
	weights := stack[:0]
	if len(nodes) > len(stack) {
		weights = make([]float64, 0, len(nodes))
	}
	weights = weights[:len(nodes)]
	clear(weights)
	for i := range nodes {
		if _, ok := nodes[i].SphinxKeyFor(rotation); !ok {
			continue
		}
		w := nodes[i].Performance
		if w <= 0 {
			w = minWeight
		}
		w *= r.health.factor(nodes[i].Identity)
		weights[i] = w
		total += w
	}
	if total <= 0 {
		return candidate{}, errors.New("no node with a key for this rotation")
	}
	x := r.rnd.float64() * total
	chosen := -1
	for i, w := range weights {
		if w <= 0 {
			continue
		}
		chosen = i
		if x < w {
			break
		}
		x -= w
	}
	key, _ := nodes[chosen].SphinxKeyFor(rotation)
	return candidate{Identity: nodes[chosen].Identity, key: key}, nil
}

// minWeight keeps a node the directory scored zero (new, not yet probed)
// choosable, rarely.
const minWeight = 0.01

// nodeHealth remembers mixes on whose routes packets were lost recently, so
// that retransmissions avoid a node that died before the directory noticed.
// The directory drops dead nodes at the next epoch; until then a lost ack
// makes every mix on its two routes less likely to be chosen, and an ack that
// arrives clears them. Gateways are not judged: the recipient's is fixed.
type nodeHealth struct {
	mu       sync.Mutex
	failures map[directory.Key]int
}

// maxFailures bounds the penalty: even a node that lost everything keeps a
// small chance, so a transient outage heals once packets get through again.
const maxFailures = 8

func (h *nodeHealth) factor(id directory.Key) float64 {
	h.mu.Lock()
	f := h.failures[id]
	h.mu.Unlock()
	return 1 / float64(1+f*f)
}

// lost records that a packet whose routes used these mixes was not acked.
func (h *nodeHealth) lost(mixes []directory.Key) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.failures == nil {
		h.failures = make(map[directory.Key]int)
	}
	for _, id := range mixes {
		if id.IsZero() { // the packet was never built
			continue
		}
		if h.failures[id] < maxFailures {
			h.failures[id]++
		}
	}
}

// delivered records that a packet through these mixes was acked.
func (h *nodeHealth) delivered(mixes []directory.Key) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, id := range mixes {
		delete(h.failures, id)
	}
}

// forget drops nodes that are no longer in the topology.
func (h *nodeHealth) forget(t *directory.Topology) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for id := range h.failures {
		if _, ok := t.NodeByIdentity(id); !ok {
			delete(h.failures, id)
		}
	}
}
