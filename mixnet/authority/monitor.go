package authority

import (
	"context"
	crand "crypto/rand"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/gatewire"
	"github.com/nym-go/nym/mixnet/link"
	"github.com/nym-go/nym/mixnet/sphinx"
)

// Monitor configures the network monitor: the authority measures each
// seated node by Sphinx test packets sent through real routes of the
// mixnet, as Nym's network monitor does, so a node that drops packets
// scores low whatever its health endpoint says. Zero fields take defaults.
type Monitor struct {
	// Loops is how many test loops go through each seated node (mix or
	// gateway) per round. Default 3; negative turns the monitor off.
	Loops int
	// Wait is how long a round waits for its loops to come back, on top of
	// the mixing delays (the monitor asks for none) and the connect
	// timeout, and at most a quarter epoch. Default 2 s.
	Wait time.Duration
	// Window is how many recent rounds a node's loop score covers.
	// Default 8.
	Window int
}

func (m Monitor) withDefaults() (Monitor, error) {
	if m.Loops == 0 {
		m.Loops = 3
	}
	if m.Wait == 0 {
		m.Wait = 2 * time.Second
	}
	if m.Wait < 0 {
		return m, fmt.Errorf("monitor: negative wait %s", m.Wait)
	}
	if m.Window <= 0 {
		m.Window = 8
	}
	return m, nil
}

// loopHistory is what came back of the test loops through one node, per
// round, newest last: loops that count against the node and how many of
// them are deemed back (see recordLoops).
type loopHistory struct {
	sent     []int
	returned []float64
	last     time.Time // the latest round that measured the node
}

// record appends one round's attributed counts, keeping window rounds.
func (h *loopHistory) record(sent int, returned float64, window int, now time.Time) {
	h.last = now
	h.sent = append(h.sent, sent)
	h.returned = append(h.returned, returned)
	if over := len(h.sent) - window; over > 0 {
		h.sent = h.sent[over:]
		h.returned = h.returned[over:]
	}
}

// score is the share of loops that came back, 1 for a node never measured
// (standby nodes carry no traffic, so loops cannot go through them).
func (h *loopHistory) score() float64 {
	var s, r float64
	for i := range h.sent {
		s += float64(h.sent[i])
		r += h.returned[i]
	}
	if s == 0 {
		return 1
	}
	return r / s
}

// testLoop is one Sphinx packet the monitor sent: route L1 → L2 → L3 →
// gateway, sent through that same gateway, back to the monitor.
type testLoop struct {
	id    [sphinx.IDSize]byte
	nodes [4]directory.Key // layer 1..3 and the gateway
	back  bool
}

// monitorLoop runs monitor rounds every ProbeInterval until ctx ends.
func (s *Server) monitorLoop(ctx context.Context) {
	if s.cfg.Monitor.Loops < 0 {
		return
	}
	ticker := time.NewTicker(s.cfg.ProbeInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			s.monitorRound(ctx)
		}
	}
}

// monitorRound sends Loops test loops through every seated mix and
// gateway of the published topology and records what came back.
func (s *Server) monitorRound(ctx context.Context) {
	s.mu.Lock()
	t := s.topo
	s.mu.Unlock()
	if t == nil || t.Routable() != nil {
		return // no route to test through
	}
	if s.cfg.Now().Sub(t.EpochStart) < min(t.EpochLength/10, 30*time.Second) {
		// Nodes are still fetching this epoch's roles and drop packets
		// routed by it: the round would blame them for our haste.
		return
	}
	byGateway := planLoops(t, s.cfg.Monitor.Loops)
	// Loops go to a gateway's clients port only on the IP its proving
	// handshake reached, never to an address merely named.
	dialAddr := make(map[directory.Key]string, len(byGateway))
	s.mu.Lock()
	for id := range byGateway {
		gw, _ := t.NodeByIdentity(id)
		n, ok := s.nodes[id]
		_, port, err := net.SplitHostPort(gw.ClientsAddr)
		if ok && n.adm.proven && err == nil {
			dialAddr[id] = net.JoinHostPort(n.adm.ip.String(), port)
		}
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	sem := make(chan struct{}, max(s.cfg.ProbeParallelism, 1))
	for id, loops := range byGateway {
		gw, _ := t.NodeByIdentity(id)
		addr, ok := dialAddr[id]
		if !ok {
			continue // its loops count as lost
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := s.runLoops(ctx, t, gw, addr, loops); err != nil {
				s.log.Debug("monitor: gateway unreachable for test loops", "gateway", id, "err", err)
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return
	}
	s.mu.Lock()
	sameEpoch := s.topo != nil && s.topo.Epoch == t.Epoch
	s.mu.Unlock()
	if !sameEpoch {
		// Nodes were switching topologies while the loops were out and
		// drop packets of the old routes: the round says nothing of them.
		return
	}
	var all []*testLoop
	for _, loops := range byGateway {
		all = append(all, loops...)
	}
	s.recordLoops(all)
}

// planLoops picks, for every node of the layers and every gateway, loops
// that go through it with the other hops drawn at random, grouped by the
// gateway they start and end at.
func planLoops(t *directory.Topology, perNode int) map[directory.Key][]*testLoop {
	gateways := append(append([]directory.Node(nil), t.Entry...), t.Exit...)
	gateways = uniqueNodes(gateways)
	pick := func(g []directory.Node) directory.Node { return g[rand.IntN(len(g))] }
	out := make(map[directory.Key][]*testLoop)
	add := func(fixLayer int, fixed directory.Node) {
		l := &testLoop{}
		crand.Read(l.id[:])
		gw := pick(gateways)
		for i := range 3 {
			l.nodes[i] = pick(t.Layers[i]).Identity
		}
		if fixLayer < 3 {
			l.nodes[fixLayer] = fixed.Identity
		} else {
			gw = fixed
		}
		l.nodes[3] = gw.Identity
		out[gw.Identity] = append(out[gw.Identity], l)
	}
	for layer := range t.Layers {
		for _, n := range t.Layers[layer] {
			for range perNode {
				add(layer, n)
			}
		}
	}
	for _, g := range gateways {
		for range perNode {
			add(3, g)
		}
	}
	return out
}

// uniqueNodes drops repeated identities (a gateway in both roles).
func uniqueNodes(ns []directory.Node) []directory.Node {
	seen := make(map[directory.Key]bool)
	out := ns[:0]
	for _, n := range ns {
		if !seen[n.Identity] {
			seen[n.Identity] = true
			out = append(out, n)
		}
	}
	return out
}

// runLoops connects to gw's clients port as a mixnet client (the monitor's
// address is its link key), sends loops and marks those that come back
// within Wait.
func (s *Server) runLoops(ctx context.Context, t *directory.Topology, gw directory.Node, addr string, loops []*testLoop) error {
	byID := make(map[[sphinx.IDSize]byte]*testLoop, len(loops))
	for _, l := range loops {
		byID[l.id] = l
	}
	var mu sync.Mutex
	pending := len(loops)
	allBack := make(chan struct{})
	// A round must end well inside its epoch: one that spans a boundary
	// is discarded (monitorRound).
	ctx, cancel := context.WithTimeout(ctx, min(s.cfg.ProbeTimeout+s.cfg.Monitor.Wait, s.clock.EpochLength/4))
	defer cancel()
	cfg := link.Config{
		Static:           s.adm.key,
		Logger:           discardLogger,
		HandshakeTimeout: s.cfg.ProbeTimeout,
		ConnectTimeout:   s.cfg.ProbeTimeout,
		Handler: func(c *link.Conn, f link.Frame) error {
			if f.Kind != link.KindClient {
				return nil
			}
			m, err := gatewire.Parse(f.Payload)
			if err != nil {
				return nil
			}
			d, ok := m.(*gatewire.Deliver)
			if !ok {
				return nil
			}
			c.Send(link.Frame{Kind: link.KindClient, Payload: (&gatewire.Received{Seq: d.Seq}).AppendBinary(nil)})
			mu.Lock()
			defer mu.Unlock()
			if l, ok := byID[d.ID]; ok && !l.back {
				l.back = true
				if pending--; pending == 0 {
					close(allBack)
				}
			}
			return nil
		},
	}
	if k, ok := gw.KEMKeyFor(t.Rotation); ok {
		if pk, err := link.ParseKEMPublicKey(k); err == nil {
			cfg.PeerKEM = func([32]byte) *link.KEMPublicKey { return pk }
		}
	}
	conn, err := link.Dial(ctx, addr, [32]byte(gw.NoiseKey), cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	parity := uint8(t.Rotation & 1)
	self := directory.Key(s.adm.key.Public)
	for _, l := range loops {
		pkt, err := loopPacket(t, l, self)
		if err != nil {
			return err
		}
		send := gatewire.Send{Parity: parity, FirstHop: l.nodes[0], Packet: pkt}
		conn.Send(link.Frame{Kind: link.KindClient, Payload: send.AppendBinary(nil)})
	}
	select {
	case <-allBack:
	case <-ctx.Done():
	case <-conn.Done():
	}
	return nil
}

// loopPacket builds the Sphinx packet of one loop, addressed to the monitor
// at the loop's gateway. Each hop needs its key for the rotation: a packet
// made for the announced Sphinx key only unwraps with the matching private
// key, so a loop that returns also proves the keys.
func loopPacket(t *directory.Topology, l *testLoop, self directory.Key) ([]byte, error) {
	route := make([]sphinx.Hop, 0, len(l.nodes))
	for _, id := range l.nodes {
		n, ok := t.NodeByIdentity(id)
		if !ok {
			return nil, fmt.Errorf("monitor: node %s left the topology", id)
		}
		key, ok := n.SphinxKeyFor(t.Rotation)
		if !ok {
			return nil, fmt.Errorf("monitor: node %s has no sphinx key for rotation %d", id, t.Rotation)
		}
		route = append(route, sphinx.Hop{Address: [32]byte(id), Key: [32]byte(key)})
	}
	env := gatewire.Envelope{Body: l.id[:]}
	return sphinx.NewPacket(route, sphinx.Destination{Address: self, ID: l.id}, env.AppendBinary(nil), sphinx.SizeRegular)
}

// recordLoops attributes a round's loops to the nodes they went through.
// It measures each node against the round as a whole: what a busy
// machine, a slow monitor link or a late boundary costs every route is
// no node's fault, so a node's returns are divided by the round's return
// rate (capped at all of them). A node that returned much less than the
// round (below MinPerformance of it) is bad this round, and a lost loop
// counts against each of its nodes except those that shared it with a bad
// node: the drop is then that node's, and the loop says nothing of the
// others (as a route through a known-bad node tells nothing of its
// companions).
func (s *Server) recordLoops(loops []*testLoop) {
	if len(loops) == 0 {
		return
	}
	sent := make(map[directory.Key]int)
	back := make(map[directory.Key]int)
	returned := 0
	for _, l := range loops {
		if l.back {
			returned++
		}
		for _, id := range l.nodes {
			sent[id]++
			if l.back {
				back[id]++
			}
		}
	}
	s.log.Debug("monitor round", "loops", len(loops), "returned", returned)
	if returned < (len(loops)+3)/4 {
		// Most loops lost: the monitor's own link, a busy machine, or a
		// network just forming whose nodes have not fetched their roles
		// yet. That blames no node in particular; nor can a round tell
		// which node lost everything when one sits in every route (a
		// layer of one).
		return
	}
	overall := float64(returned) / float64(len(loops))
	bad := make(map[directory.Key]bool)
	for id, n := range sent {
		if float64(back[id])/float64(n) < s.cfg.MinPerformance*overall {
			bad[id] = true
		}
	}
	counted := make(map[directory.Key]int)
	for _, l := range loops {
		for _, id := range l.nodes {
			if l.back || bad[id] || !sharesBad(l, id, bad) {
				counted[id]++
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, n := range counted {
		st, ok := s.nodes[id]
		if !ok {
			continue
		}
		before := st.loops.score()
		st.loops.record(n, min(float64(n), float64(back[id])/overall), s.cfg.Monitor.Window, s.cfg.Now())
		if after := st.loops.score(); after < s.cfg.MinPerformance && before >= s.cfg.MinPerformance {
			s.log.Warn("node drops test packets", "node", id, "returned", back[id], "sent", n, "score", after)
		}
	}
}

// sharesBad reports whether loop l went through a bad node other than id.
func sharesBad(l *testLoop, id directory.Key, bad map[directory.Key]bool) bool {
	for _, o := range l.nodes {
		if o != id && bad[o] {
			return true
		}
	}
	return false
}

// loopBlockLocked says why a node's loop score keeps it from a seat. A node
// out for dropping packets cannot be measured again (loops go only through
// seated nodes), so after probation it gets a seat again and a fresh
// measurement: an honest node that had a bad hour comes back, a dropper
// holds a seat one epoch in every few.
func (s *Server) loopBlockLocked(n *nodeState, now time.Time) string {
	if probation := 4 * s.clock.EpochLength; now.Sub(n.loops.last) > probation {
		n.loops = loopHistory{}
	}
	// Two rounds at least: one unlucky round (a node still fetching its
	// role) is not a verdict.
	if sc := n.loops.score(); len(n.loops.sent) >= 2 && sc < s.cfg.MinPerformance {
		return fmt.Sprintf("returned %.0f%% of its test packets, below %.0f%%", 100*sc, 100*s.cfg.MinPerformance)
	}
	return ""
}
