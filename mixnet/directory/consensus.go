package directory

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// consensusDomain separates consensus signatures from everything else an
// authority key signs (votes, single-authority topologies).
const consensusDomain = "nym-go/directory/consensus/v1\x00"

// maxConsensusSignatures bounds the signatures a consensus may carry: one
// per authority, with room for a few strangers that are then ignored.
const maxConsensusSignatures = 2 * MaxAuthorities

// ErrTooFewSignatures means a consensus lacks k valid signatures from
// distinct authorities of the network file.
var ErrTooFewSignatures = errors.New("consensus has too few valid signatures")

// ConsensusSignature is one authority's signature over consensusDomain ‖
// the consensus document's bytes.
type ConsensusSignature struct {
	Key       Key    `json:"key"`
	Signature []byte `json:"signature"`
}

// SignedConsensus is a consensus document, a Topology that every honest
// authority encodes byte for byte alike from the same votes, with the
// signatures its authority has gathered for those exact bytes. Its
// DirectoryKey is the network's ID.
//
// A single authority without a network file serves a SignedTopology; it
// decodes into SignedConsensus with Signature set and Signatures empty, and
// Verify accepts it from a network of one authority.
type SignedConsensus struct {
	Topology   json.RawMessage      `json:"topology"`
	Signatures []ConsensusSignature `json:"signatures,omitempty"`
	// Signature is a single authority's SignedTopology signature.
	Signature []byte `json:"signature,omitempty"`
}

// EncodeConsensus encodes t as a consensus document of net: it sets
// t.DirectoryKey to net's ID and checks t as clients will. Encoding has no
// map and no clock, so equal topologies give equal bytes.
func EncodeConsensus(net *Network, t *Topology) ([]byte, error) {
	t.DirectoryKey = net.ID()
	if err := t.validate(); err != nil {
		return nil, fmt.Errorf("encode consensus: %w", err)
	}
	raw, err := json.Marshal(t)
	if err != nil {
		return nil, fmt.Errorf("encode consensus: %w", err)
	}
	if len(raw) > MaxTopologySize {
		return nil, fmt.Errorf("encode consensus: %d bytes, limit %d", len(raw), MaxTopologySize)
	}
	return raw, nil
}

// SignConsensus signs a consensus document's bytes with an authority key.
func SignConsensus(priv ed25519.PrivateKey, doc []byte) ConsensusSignature {
	return ConsensusSignature{Key: Key(priv.Public().(ed25519.PublicKey)), Signature: ed25519.Sign(priv, signedMessage(consensusDomain, doc))}
}

// Valid reports whether s is its key's signature over doc.
func (s ConsensusSignature) Valid(doc []byte) bool {
	return len(s.Signature) == ed25519.SignatureSize && ed25519.Verify(s.Key.Ed25519(), signedMessage(consensusDomain, doc), s.Signature)
}

// Verify accepts the consensus only if at least net.Threshold distinct
// authorities of net signed these bytes, and it is a well-formed topology of
// net; it returns the topology. Signatures from keys outside the network
// file, duplicates and bad signatures do not count, and are named in the
// error when the valid ones fall short (ErrTooFewSignatures). It does not
// judge freshness: see Topology.CheckFresh.
func (sc SignedConsensus) Verify(net *Network) (*Topology, error) {
	if len(sc.Signatures) == 0 && len(sc.Signature) > 0 {
		if len(net.Authorities) != 1 {
			return nil, fmt.Errorf("%w: a single authority's topology, but the network file names %d authorities and needs %d signatures",
				ErrTooFewSignatures, len(net.Authorities), net.Threshold)
		}
		return SignedTopology{Topology: sc.Topology, Signature: sc.Signature}.Verify(net.Authorities[0].Key.Ed25519())
	}
	if len(sc.Topology) == 0 || len(sc.Topology) > MaxTopologySize {
		return nil, fmt.Errorf("consensus: %w: %d bytes (limit %d)", ErrInvalid, len(sc.Topology), MaxTopologySize)
	}
	if len(sc.Signatures) > maxConsensusSignatures {
		return nil, fmt.Errorf("consensus: %w: %d signatures, limit %d", ErrInvalid, len(sc.Signatures), maxConsensusSignatures)
	}
	signers, problems := sc.validSigners(net)
	if len(signers) < net.Threshold {
		epoch := "?"
		var t Topology
		if json.Unmarshal(sc.Topology, &t) == nil {
			epoch = fmt.Sprint(t.Epoch)
		}
		msg := fmt.Sprintf("epoch %s: %d valid signatures from authorities of the network file, %d needed", epoch, len(signers), net.Threshold)
		if len(signers) > 0 {
			msg += " (signed by " + strings.Join(signers, ", ") + ")"
		}
		if len(problems) > 0 {
			msg += "; not counted: " + strings.Join(problems, "; ")
		}
		return nil, fmt.Errorf("%w: %s", ErrTooFewSignatures, msg)
	}
	t := new(Topology)
	if err := json.Unmarshal(sc.Topology, t); err != nil {
		return nil, fmt.Errorf("consensus: %w: decode: %v", ErrInvalid, err)
	}
	if err := t.check(net.ID()); err != nil {
		return nil, fmt.Errorf("consensus: %w", err)
	}
	return t, nil
}

// validSigners names the distinct authorities of net with a valid signature
// on the document, and says why every other signature does not count.
func (sc SignedConsensus) validSigners(net *Network) (signers, problems []string) {
	seen := make(map[Key]bool)
	for _, s := range sc.Signatures {
		a, ok := net.Authority(s.Key)
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("key %s is not in the network file", s.Key))
		case seen[s.Key]:
			problems = append(problems, fmt.Sprintf("%s signed twice", a.Name))
		case !s.Valid(sc.Topology):
			problems = append(problems, fmt.Sprintf("%s: %v", a.Name, ErrBadSignature))
		default:
			seen[s.Key] = true
			signers = append(signers, a.Name)
		}
	}
	return signers, problems
}

// AddSignature adds s to sc if it is a valid signature over sc's document by
// an authority of net that has not signed it yet, and reports whether it
// did. A signature over other bytes is never added.
func (sc *SignedConsensus) AddSignature(net *Network, s ConsensusSignature) bool {
	if _, ok := net.Authority(s.Key); !ok || !s.Valid(sc.Topology) {
		return false
	}
	for _, have := range sc.Signatures {
		if have.Key == s.Key {
			return false
		}
	}
	sc.Signatures = append(sc.Signatures, ConsensusSignature{Key: s.Key, Signature: bytes.Clone(s.Signature)})
	return true
}
