package authority

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"github.com/nym-go/nym/mixnet/directory"
	"math"
	"slices"
)

// Limits are the directory's targets for the size of each role.
type Limits struct {
	// MaxEntries is the most entry gateways in one epoch.
	MaxEntries int
	// MaxExits is the most exit gateways in one epoch.
	MaxExits int
	// LayerSize is the most mix nodes in each of the three layers.
	LayerSize int
}

// DefaultLimits are used for zero fields of Limits.
var DefaultLimits = Limits{MaxEntries: 50, MaxExits: 50, LayerSize: 100}

// candidate is a node eligible for a role this epoch.
type candidate struct {
	id    directory.Key
	caps  directory.Capabilities
	score float64
}

// assignment is who plays which role in one epoch, by identity. It is what
// the store keeps, so a restarted directory republishes the same roles.
type assignment struct {
	Entry   []directory.Key    `json:"entry"`
	Exit    []directory.Key    `json:"exit"`
	Layers  [3][]directory.Key `json:"layers"`
	Standby []directory.Key    `json:"standby"`
}

// The five routed groups, in the order the assigner serves them: exits are
// usually the scarcest capability, so they choose first.
const (
	groupExit = iota
	groupEntry
	groupLayer1
	groupLayer2
	groupLayer3
	numGroups
)

func groupRole(g int) directory.Role {
	switch g {
	case groupExit:
		return directory.RoleExit
	case groupEntry:
		return directory.RoleEntry
	}
	return directory.RoleMix
}

func isLayer(g int) bool { return g >= groupLayer1 }

func (a *assignment) groups() [numGroups][]directory.Key {
	return [numGroups][]directory.Key{a.Exit, a.Entry, a.Layers[0], a.Layers[1], a.Layers[2]}
}

// equal reports whether two assignments give every node the same role in
// the same order.
func (a *assignment) equal(b *assignment) bool {
	ga, gb := a.groups(), b.groups()
	for i := range ga {
		if !slices.Equal(ga[i], gb[i]) {
			return false
		}
	}
	return slices.Equal(a.Standby, b.Standby)
}

// assignRoles decides the roles of epoch from the eligible candidates:
//
//  1. Keep every previous assignment that is still valid (the node is
//     eligible, still offers the role, and the group is within its limit), so
//     nodes keep their layer and clients' paths stay stable.
//  2. Give every empty group one node, then fill groups round-robin up to
//     their limits, mix layers always growing the smallest first. For each
//     seat the candidate offering the fewest roles wins, so flexible (auto)
//     nodes stay free for roles only they can fill; then the higher score;
//     then a per-epoch hash of the identity, which no node controls.
//  3. If a group is still empty, move a capable node in from a group that can
//     spare one: another layer first for a layer, then any other group.
//  4. Everyone left is standby.
//
// lim has its defaults filled in (Limits.withDefaults).
func assignRoles(prev assignment, eligible []candidate, lim Limits, epoch uint64) assignment {
	limit := [numGroups]int{lim.MaxExits, lim.MaxEntries, lim.LayerSize, lim.LayerSize, lim.LayerSize}

	byID := make(map[directory.Key]candidate, len(eligible))
	for _, c := range eligible {
		byID[c.id] = c
	}
	placed := make(map[directory.Key]bool, len(eligible))
	var groups [numGroups][]directory.Key

	// 1. Keep.
	for g, ids := range prev.groups() {
		for _, id := range ids {
			c, ok := byID[id]
			if !ok || placed[id] || !c.caps.Allows(groupRole(g)) || len(groups[g]) >= limit[g] {
				continue
			}
			groups[g] = append(groups[g], id)
			placed[id] = true
		}
	}

	// 2. Fill.
	pool := slices.Clone(eligible)
	rank := func(c candidate) uint64 { return tiebreak(epoch, c.id) }
	slices.SortFunc(pool, func(a, b candidate) int {
		if d := capCount(a.caps) - capCount(b.caps); d != 0 {
			return d
		}
		if qa, qb := quantize(a.score), quantize(b.score); qa != qb {
			return qb - qa
		}
		ra, rb := rank(a), rank(b)
		switch {
		case ra < rb:
			return -1
		case ra > rb:
			return 1
		}
		return slices.Compare(a.id[:], b.id[:])
	})
	take := func(g int) bool {
		for _, c := range pool {
			if !placed[c.id] && c.caps.Allows(groupRole(g)) {
				groups[g] = append(groups[g], c.id)
				placed[c.id] = true
				return true
			}
		}
		return false
	}
	for g := range groups {
		if len(groups[g]) == 0 {
			take(g)
		}
	}
	for progress := true; progress; {
		progress = false
		for _, g := range []int{groupExit, groupEntry} {
			if len(groups[g]) < limit[g] && take(g) {
				progress = true
			}
		}
		for range 3 {
			// Fill the smallest layer that still has room and a candidate.
			layers := []int{groupLayer1, groupLayer2, groupLayer3}
			slices.SortStableFunc(layers, func(a, b int) int { return len(groups[a]) - len(groups[b]) })
			for _, g := range layers {
				if len(groups[g]) < limit[g] && take(g) {
					progress = true
					break
				}
			}
		}
	}

	// 3. Repair empty groups from groups that can spare a capable node.
	for moved := true; moved; {
		moved = false
		for g := range groups {
			if len(groups[g]) > 0 {
				continue
			}
			if donor, i, ok := findDonor(groups, g, byID); ok {
				id := groups[donor][i]
				groups[donor] = slices.Delete(groups[donor], i, i+1)
				groups[g] = append(groups[g], id)
				moved = true
			}
		}
	}

	// 4. Standby.
	var out assignment
	out.Exit, out.Entry = nonNil(groups[groupExit]), nonNil(groups[groupEntry])
	for l := range 3 {
		out.Layers[l] = nonNil(groups[groupLayer1+l])
	}
	out.Standby = []directory.Key{}
	for _, c := range pool {
		if !placed[c.id] {
			out.Standby = append(out.Standby, c.id)
		}
	}
	return out
}

// findDonor picks the node to move into empty group g: from the largest group
// with at least two members that has a node able to play g's role,
// preferring other layers when g is a layer. Within the donor it takes the
// last capable member, the most recently placed, so long-standing members
// stay where they are.
func findDonor(groups [numGroups][]directory.Key, g int, byID map[directory.Key]candidate) (donor, index int, ok bool) {
	best, bestIndex, bestRank := -1, -1, -1
	for d := range groups {
		if d == g || len(groups[d]) < 2 {
			continue
		}
		idx := -1
		for i := len(groups[d]) - 1; i >= 0; i-- {
			if byID[groups[d][i]].caps.Allows(groupRole(g)) {
				idx = i
				break
			}
		}
		if idx < 0 {
			continue
		}
		rank := len(groups[d])
		if isLayer(g) && isLayer(d) {
			rank += 1 << 20 // an over-full layer gives before a gateway group
		}
		if rank > bestRank {
			best, bestIndex, bestRank = d, idx, rank
		}
	}
	return best, bestIndex, best >= 0
}

// withDefaults returns l with its zero fields taken from DefaultLimits. A
// negative limit is an error.
func (l Limits) withDefaults() (Limits, error) {
	if l.MaxEntries < 0 || l.MaxExits < 0 || l.LayerSize < 0 {
		return l, fmt.Errorf("negative role limit in %+v", l)
	}
	if l.MaxEntries == 0 {
		l.MaxEntries = DefaultLimits.MaxEntries
	}
	if l.MaxExits == 0 {
		l.MaxExits = DefaultLimits.MaxExits
	}
	if l.LayerSize == 0 {
		l.LayerSize = DefaultLimits.LayerSize
	}
	return l, nil
}

// quantize buckets scores by tenths so that a long-running node at 0.98 does
// not lose its precedence to a newcomer at 1.0 on noise.
func quantize(score float64) int { return int(math.Round(score * 10)) }

// tiebreak orders equally good candidates differently each epoch.
func tiebreak(epoch uint64, id directory.Key) uint64 {
	var buf [8 + directory.KeySize]byte
	binary.BigEndian.PutUint64(buf[:8], epoch)
	copy(buf[8:], id[:])
	sum := sha256.Sum256(buf[:])
	return binary.BigEndian.Uint64(sum[:8])
}

func nonNil(ids []directory.Key) []directory.Key {
	if ids == nil {
		return []directory.Key{}
	}
	return ids
}

// capCount is how many roles c offers; the assigner prefers specialised
// nodes for a role so flexible ones stay free for roles only they can fill.
func capCount(c directory.Capabilities) int {
	n := 0
	for _, b := range []bool{c.Mixnode, c.Entry, c.Exit} {
		if b {
			n++
		}
	}
	return n
}
