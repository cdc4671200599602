package client

import (
	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/link"
)

// gatewayKEM makes the link to our gateway hybrid (post-quantum) when the
// gateway's descriptor, through the signed topology, publishes an ML-KEM
// key for the topology's rotation, and classical when it does not (a
// gateway from before post-quantum links). Nobody between us and the
// directory can remove the key: the topology is signed, and a handshake
// stripped of its KEM part fails.
func gatewayKEM(gw directory.Node, rotation uint64) func([32]byte) *link.KEMPublicKey {
	kem, ok := gw.KEMKeyFor(rotation)
	if !ok {
		return nil
	}
	// The topology's checks already parsed the key; an error here is
	// impossible, and a nil result would only mean classical.
	pk, err := link.ParseKEMPublicKey(kem)
	if err != nil {
		return nil
	}
	return func(static [32]byte) *link.KEMPublicKey {
		if static != gw.NoiseKey {
			return nil
		}
		return pk
	}
}
