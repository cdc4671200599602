package node

import (
	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/link"
)

// peerKEM tells the link pool which peers take the hybrid (post-quantum)
// handshake, and with which key: those whose descriptor, as the current
// topology carries it, publishes an ML-KEM key for the topology's rotation,
// encapsulated to that key. The peer holds it until the first epoch of the
// following rotation is over (its installKeys), longer than we can keep a
// stale topology. A peer without one (a node from before post-quantum links)
// gets the classical handshake, unless this node requires post-quantum
// links, in which case the pool does not dial it.
func (n *Node) peerKEM(static [32]byte) *link.KEMPublicKey {
	t := n.topo.Load()
	if t == nil {
		return nil
	}
	for _, group := range [][]directory.Node{t.Entry, t.Exit, t.Layers[0], t.Layers[1], t.Layers[2], t.Standby} {
		for i := range group {
			if group[i].NoiseKey != static {
				continue
			}
			kem, ok := group[i].KEMKeyFor(t.Rotation)
			if !ok {
				return nil
			}
			pk, err := link.ParseKEMPublicKey(kem)
			if err != nil {
				// The directory checks every key it lists, so this is a
				// bug, not a peer's doing.
				n.log.Error("topology lists a malformed KEM key", "node", group[i].Identity, "err", err)
				return nil
			}
			return pk
		}
	}
	return nil
}
