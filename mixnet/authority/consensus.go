package authority

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/nym-go/nym/mixnet/directory"
)

// A network of authorities (Config.Network) agrees on one topology per epoch:
//
//  1. In the vote window before epoch E (Config.VoteWindow), each authority
//     signs its vote for E: the nodes it judges fit, as they registered,
//     with the performance it measured (vote.go).
//  2. It fetches the others' votes until it has them all or half the window
//     has passed (peers.go).
//  3. It computes the consensus from the votes it has (computeConsensus):
//     deterministic, so authorities with the same votes and the same
//     previous consensus make the same bytes.
//  4. It signs the document and fetches the others' documents of E; every
//     signature over its own bytes is added, any other is not (peers.go).
//  5. It serves the document with every signature it has; clients accept it
//     with the network's threshold of them.

// consensusInput is what the consensus of one epoch is computed from.
type consensusInput struct {
	net    *directory.Network
	epoch  uint64
	params directory.VoteParams
	// votes are the verified votes for epoch, at most one per authority.
	votes []verifiedVote
	// prev is the newest accepted consensus before epoch (nil when none is
	// known): nodes keep their roles from it, and its digest seeds the
	// tie-breaks.
	prev *acceptedConsensus
}

// verifiedVote is a vote whose signature and contents were checked.
type verifiedVote struct {
	signed directory.SignedVote
	vote   *directory.Vote
	descs  []directory.Descriptor
}

// nodeVotes gathers the votes that list one node with the same routing
// entry (keys, addresses, capabilities, version).
type nodeVotes struct {
	node  directory.Node
	perfs []float64
}

// computeConsensus computes the topology of in.epoch from the votes: a node
// is in if a majority of the network's authorities (not of the votes at
// hand) list it with the same routing entry; its performance is the median
// of their measurements, in tenths; roles go by assignRoles, keeping the previous
// consensus's roles, with tie-breaks seeded by the epoch and the previous
// consensus. Nothing in it depends on map order or on a clock.
func computeConsensus(in consensusInput) (*directory.Topology, assignment, error) {
	p := in.params
	rotation := in.epoch / p.RotationEpochs
	majority := in.net.Majority()

	// Group each node's listings by the exact routing entry.
	groups := make(map[directory.Key]map[string]*nodeVotes)
	for _, v := range in.votes {
		for i, d := range v.descs {
			n := d.Node(0)
			key, err := json.Marshal(n)
			if err != nil {
				return nil, assignment{}, fmt.Errorf("encode node %s: %w", d.Identity, err)
			}
			byEntry := groups[d.Identity]
			if byEntry == nil {
				byEntry = make(map[string]*nodeVotes)
				groups[d.Identity] = byEntry
			}
			g := byEntry[string(key)]
			if g == nil {
				g = &nodeVotes{node: n}
				byEntry[string(key)] = g
			}
			g.perfs = append(g.perfs, v.vote.Nodes[i].Performance)
		}
	}
	nodes := make(map[directory.Key]directory.Node)
	var eligible []candidate
	for id, byEntry := range groups {
		for _, g := range byEntry {
			// At most one entry can have a majority of all authorities.
			if len(g.perfs) < majority {
				continue
			}
			n := g.node
			// Tenths, as assignRoles ranks them: authorities holding
			// different subsets of the votes (one came late) then still
			// make the same document unless a node's standing changed.
			n.Performance = float64(quantize(median(g.perfs))) / 10
			if _, ok := n.SphinxKeyFor(rotation); !ok {
				continue
			}
			nodes[id] = n
			eligible = append(eligible, candidate{id: id, caps: n.Capabilities, score: n.Performance})
		}
	}
	// assignRoles orders its pool completely; sorting here makes its input,
	// and so every step of it, independent of map order.
	slices.SortFunc(eligible, func(a, b candidate) int { return bytes.Compare(a.id[:], b.id[:]) })

	var prevAssign assignment
	var prevDigest [sha256.Size]byte
	if in.prev != nil {
		prevAssign, prevDigest = in.prev.assign, sha256.Sum256(in.prev.sc.Topology)
	}
	lim := Limits{MaxEntries: p.MaxEntries, MaxExits: p.MaxExits, LayerSize: p.LayerSize}
	a := assignRoles(prevAssign, eligible, lim, consensusSeed(in.epoch, prevDigest))

	t := &directory.Topology{
		Epoch:          in.epoch,
		EpochStart:     p.EpochStart.UTC(),
		EpochEnd:       p.EpochStart.Add(p.EpochLength).UTC(),
		EpochLength:    p.EpochLength,
		Rotation:       rotation,
		RotationEpochs: p.RotationEpochs,
		// No clock: the document's time is its epoch's start.
		IssuedAt: p.EpochStart.UTC(),
	}
	list := func(ids []directory.Key, role directory.Role) []directory.Node {
		out := make([]directory.Node, 0, len(ids))
		for _, id := range ids {
			if n, ok := nodes[id]; ok && n.Validate(role, rotation) == nil {
				out = append(out, n)
			}
		}
		return out
	}
	t.Entry, t.Exit = list(a.Entry, directory.RoleEntry), list(a.Exit, directory.RoleExit)
	for l := range a.Layers {
		t.Layers[l] = list(a.Layers[l], directory.RoleMix)
	}
	t.Standby = list(a.Standby, directory.RoleStandby)
	t.Issuers = consensusIssuers(in, t.EpochStart)
	t.Monitors = ownVoices(in, func(v *directory.Vote) []directory.MonitorKey { return v.Monitors },
		func(t *directory.Topology) []directory.MonitorKey { return t.Monitors },
		func(k directory.MonitorKey) directory.Key { return k.Authority })
	slices.SortFunc(t.Monitors, directory.CompareMonitorKeys)
	return t, a, nil
}

// consensusIssuers are the ticket issuer keys of the consensus starting at
// start: for each authority the keys of its own vote, the only voice for
// them; for an authority whose vote is missing here, its keys in the
// previous consensus, so that authorities holding different subsets of the
// votes still make the same document unless the missing authority's keys
// changed. Keys whose tickets expire by start are left out.
func consensusIssuers(in consensusInput, start time.Time) []directory.IssuerKey {
	out := ownVoices(in, func(v *directory.Vote) []directory.IssuerKey { return v.Issuers },
		func(t *directory.Topology) []directory.IssuerKey { return t.Issuers },
		func(k directory.IssuerKey) directory.Key { return k.Authority })
	out = slices.DeleteFunc(out, func(k directory.IssuerKey) bool { return k.Expiry <= start.Unix() })
	slices.SortFunc(out, directory.CompareIssuerKeys)
	return out
}

// ownVoices gathers keys each authority speaks for alone (issuer keys,
// monitor keys): those of its own vote, or, when its vote is missing here,
// its keys in the previous consensus.
func ownVoices[K any](in consensusInput, ofVote func(*directory.Vote) []K, ofTop func(*directory.Topology) []K, authority func(K) directory.Key) []K {
	voted := make(map[directory.Key]bool, len(in.votes))
	var out []K
	for _, v := range in.votes {
		voted[v.vote.Authority] = true
		out = append(out, ofVote(v.vote)...)
	}
	if in.prev != nil {
		for _, k := range ofTop(in.prev.top) {
			if _, ok := in.net.Authority(authority(k)); ok && !voted[authority(k)] {
				out = append(out, k)
			}
		}
	}
	return out
}

// consensusSeed is what assignRoles's tie-breaks are keyed by: the epoch and
// the previous consensus, which no single authority or node controls.
func consensusSeed(epoch uint64, prevDigest [sha256.Size]byte) uint64 {
	var buf [8 + sha256.Size]byte
	binary.BigEndian.PutUint64(buf[:8], epoch)
	copy(buf[8:], prevDigest[:])
	sum := sha256.Sum256(buf[:])
	return binary.BigEndian.Uint64(sum[:8])
}

// median of a non-empty list; the mean of the middle two for an even count.
func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

// graceConsensus re-issues prev's nodes and roles for epoch, as a restarted
// network does when no votes can be had yet: nodes keep their seats for a
// grace epoch instead of all expiring while they re-register. It is
// deterministic, so authorities restarting from the same consensus sign the
// same bytes.
func graceConsensus(prev *acceptedConsensus, epoch uint64, p directory.VoteParams) *directory.Topology {
	rotation := epoch / p.RotationEpochs
	t := &directory.Topology{
		Epoch: epoch, EpochStart: p.EpochStart.UTC(), EpochEnd: p.EpochStart.Add(p.EpochLength).UTC(),
		EpochLength: p.EpochLength, Rotation: rotation, RotationEpochs: p.RotationEpochs, IssuedAt: p.EpochStart.UTC(),
	}
	keep := func(nodes []directory.Node, role directory.Role) []directory.Node {
		out := make([]directory.Node, 0, len(nodes))
		for _, n := range nodes {
			if n.Validate(role, rotation) == nil {
				out = append(out, n)
			}
		}
		return out
	}
	pt := prev.top
	t.Entry, t.Exit, t.Standby = keep(pt.Entry, directory.RoleEntry), keep(pt.Exit, directory.RoleExit), keep(pt.Standby, directory.RoleStandby)
	for l := range pt.Layers {
		t.Layers[l] = keep(pt.Layers[l], directory.RoleMix)
	}
	t.Issuers = slices.DeleteFunc(slices.Clone(pt.Issuers), func(k directory.IssuerKey) bool { return k.Expiry <= t.EpochStart.Unix() })
	t.Monitors = slices.Clone(pt.Monitors)
	return t
}

// acceptedConsensus is a consensus with the threshold of signatures.
type acceptedConsensus struct {
	sc     directory.SignedConsensus
	top    *directory.Topology
	assign assignment
}

// assignmentOf reads the roles out of a topology.
func assignmentOf(t *directory.Topology) assignment {
	ids := func(nodes []directory.Node) []directory.Key {
		out := make([]directory.Key, len(nodes))
		for i, n := range nodes {
			out[i] = n.Identity
		}
		return out
	}
	a := assignment{Entry: ids(t.Entry), Exit: ids(t.Exit), Standby: ids(t.Standby)}
	for l := range t.Layers {
		a.Layers[l] = ids(t.Layers[l])
	}
	return a
}

// paramsFor are this authority's consensus params for epoch.
func (s *Server) paramsFor(epoch uint64) directory.VoteParams {
	l := s.cfg.Limits
	return directory.VoteParams{
		EpochStart: s.clock.start(epoch).UTC(), EpochLength: s.clock.EpochLength, RotationEpochs: s.clock.RotationEpochs,
		MaxEntries: l.MaxEntries, MaxExits: l.MaxExits, LayerSize: l.LayerSize,
	}
}

// sameParams compares params; time.Time needs Equal.
func sameParams(a, b directory.VoteParams) bool {
	return a.EpochStart.Equal(b.EpochStart) && a.EpochLength == b.EpochLength && a.RotationEpochs == b.RotationEpochs &&
		a.MaxEntries == b.MaxEntries && a.MaxExits == b.MaxExits && a.LayerSize == b.LayerSize
}

// genesis is when epoch 0 starts for a new data dir: the network file's
// genesis for an authority of a network (all of them must count alike),
// otherwise now.
func (s *Server) genesis() time.Time {
	if s.cfg.Network == nil {
		return s.cfg.Now().UTC().Round(0)
	}
	if s.cfg.Network.Genesis.IsZero() {
		return time.Unix(0, 0).UTC()
	}
	return s.cfg.Network.Genesis.UTC().Round(0)
}

// genesisFor is the genesis a data dir created with clock must have for this
// run: the network's, for an authority of a network; whatever it has
// otherwise.
func (s *Server) genesisFor(clock epochClock) time.Time {
	if s.cfg.Network == nil {
		return clock.Genesis
	}
	return s.genesis()
}

// graceLocked publishes, for the first epoch after a restart, the roles of
// the last epoch before it. The nodes' descriptors have aged past their TTL
// while the directory was down (they could not refresh), so assigning anew
// would expire everyone and publish an empty topology; instead they keep
// their seats for this grace epoch, re-register meanwhile, and the next
// boundary assigns as usual.
func (s *Server) graceLocked(saved savedAssignment, epoch uint64, now time.Time) error {
	s.log.Info("restarted after an outage: keeping the last assignment for a grace epoch",
		"last_epoch", saved.Epoch, "epoch", epoch, "nodes", len(s.nodes))
	s.current = savedAssignment{Epoch: epoch, Assignment: saved.Assignment}
	if err := s.store.saveAssignment(s.current); err != nil {
		s.log.Error("saving assignment", "err", err)
	}
	return s.publishLocked(now)
}
