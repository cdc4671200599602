package directory

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
)

// Limits on votes.
const (
	// MaxVoteSize bounds an encoded Vote: MaxVoteNodes descriptors of a
	// few KB each.
	MaxVoteSize = 64 << 20
	// MaxVoteNodes bounds the nodes one vote may list.
	MaxVoteNodes = 10000
)

// voteDomain separates vote signatures from everything else an authority key
// signs.
const voteDomain = "nym-go/directory/vote/v1\x00"

// ErrWrongEpoch means a vote or consensus is for another epoch than asked.
var ErrWrongEpoch = errors.New("wrong epoch")

// Vote is one authority's signed view of the network for one epoch, made in
// the vote window before the epoch starts: the descriptors it holds of the
// nodes it judges fit for a role (fresh, answering its probes, with a Sphinx
// key for the epoch's rotation) and the performance it measured for each.
type Vote struct {
	Epoch uint64 `json:"epoch"`
	// Authority is the voter's key; the vote is signed by it.
	Authority Key       `json:"authority"`
	IssuedAt  time.Time `json:"issued_at"`
	// Params are the voter's settings that shape the consensus. Authorities
	// of one network must agree on them; a vote with other params is
	// refused, since it would make another document.
	Params VoteParams `json:"params"`
	Nodes  []VoteNode `json:"nodes"`
	// Issuers are the voter's own ticket keys (see IssuerKey), in
	// CompareIssuerKeys order; a key of any other authority is refused.
	Issuers []IssuerKey `json:"issuers,omitempty"`
	// Monitors holds the voter's own loop monitor key (see MonitorKey), at
	// most one; a key of any other authority is refused.
	Monitors []MonitorKey `json:"monitors,omitempty"`
}

// VoteParams are the settings every authority of a network must share.
type VoteParams struct {
	EpochStart     time.Time     `json:"epoch_start"`
	EpochLength    time.Duration `json:"epoch_length_ns"`
	RotationEpochs uint64        `json:"rotation_epochs"`
	MaxEntries     int           `json:"max_entries"`
	MaxExits       int           `json:"max_exits"`
	LayerSize      int           `json:"layer_size"`
}

// VoteNode is one node of a vote: its descriptor as it registered it, and
// the performance the voter measured (0..1).
type VoteNode struct {
	Descriptor  SignedDescriptor `json:"descriptor"`
	Performance float64          `json:"performance"`
}

// SignedVote is a Vote as its authority encoded it, with its signature over
// voteDomain ‖ Vote.
type SignedVote struct {
	Vote      json.RawMessage `json:"vote"`
	Signature []byte          `json:"signature"`
}

// SignVote encodes v, after setting v.Authority to priv's public key, and
// signs it.
func SignVote(priv ed25519.PrivateKey, v *Vote) (SignedVote, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return SignedVote{}, fmt.Errorf("sign vote: private key has %d bytes, want %d", len(priv), ed25519.PrivateKeySize)
	}
	v.Authority = Key(priv.Public().(ed25519.PublicKey))
	raw, err := json.Marshal(v)
	if err != nil {
		return SignedVote{}, fmt.Errorf("sign vote: encode: %w", err)
	}
	if len(raw) > MaxVoteSize {
		return SignedVote{}, fmt.Errorf("sign vote: encoded vote is %d bytes, limit %d", len(raw), MaxVoteSize)
	}
	return SignedVote{Vote: raw, Signature: ed25519.Sign(priv, signedMessage(voteDomain, raw))}, nil
}

// Verify checks that the vote is signed by an authority of net, is for epoch
// (ErrWrongEpoch otherwise) and is well formed: every descriptor verifies,
// no node twice, performances within 0..1. It returns the vote and its
// decoded descriptors, in the vote's order.
func (sv SignedVote) Verify(net *Network, epoch uint64) (*Vote, []Descriptor, error) {
	if len(sv.Vote) == 0 || len(sv.Vote) > MaxVoteSize {
		return nil, nil, fmt.Errorf("vote: %w: %d bytes (limit %d)", ErrInvalid, len(sv.Vote), MaxVoteSize)
	}
	if len(sv.Signature) != ed25519.SignatureSize {
		return nil, nil, fmt.Errorf("vote: %w: signature has %d bytes, want %d", ErrInvalid, len(sv.Signature), ed25519.SignatureSize)
	}
	v := new(Vote)
	if err := json.Unmarshal(sv.Vote, v); err != nil {
		return nil, nil, fmt.Errorf("vote: %w: decode: %v", ErrInvalid, err)
	}
	a, ok := net.Authority(v.Authority)
	if !ok {
		return nil, nil, fmt.Errorf("vote of epoch %d: %w: signer %s is not an authority of the network file", v.Epoch, ErrUntrustedDirectory, v.Authority)
	}
	if !ed25519.Verify(a.Key.Ed25519(), signedMessage(voteDomain, sv.Vote), sv.Signature) {
		return nil, nil, fmt.Errorf("vote of %s: %w", a.Name, ErrBadSignature)
	}
	descs, err := v.check(epoch)
	if err != nil {
		return nil, nil, fmt.Errorf("vote of %s: %w", a.Name, err)
	}
	return v, descs, nil
}

// check judges a vote whose signature checked out; apart from Verify so the
// fuzz target reaches it without signing every input.
func (v *Vote) check(epoch uint64) ([]Descriptor, error) {
	if v.Epoch != epoch {
		return nil, fmt.Errorf("%w: the vote is for epoch %d, epoch %d was asked for", ErrWrongEpoch, v.Epoch, epoch)
	}
	if len(v.Nodes) > MaxVoteNodes {
		return nil, fmt.Errorf("%w: %d nodes, limit %d", ErrInvalid, len(v.Nodes), MaxVoteNodes)
	}
	p := v.Params
	if p.EpochLength <= 0 || p.RotationEpochs == 0 || p.MaxEntries <= 0 || p.MaxExits <= 0 || p.LayerSize <= 0 {
		return nil, fmt.Errorf("%w: params %+v", ErrInvalid, p)
	}
	if err := validateIssuerKeys(v.Issuers); err != nil {
		return nil, err
	}
	for _, k := range v.Issuers {
		if k.Authority != v.Authority {
			return nil, fmt.Errorf("%w: the vote of %s carries an issuer key of %s: an authority speaks only for its own keys", ErrInvalid, v.Authority, k.Authority)
		}
	}
	if err := validateMonitorKeys(v.Monitors); err != nil {
		return nil, err
	}
	for _, k := range v.Monitors {
		if k.Authority != v.Authority {
			return nil, fmt.Errorf("%w: the vote of %s carries a monitor key of %s: an authority speaks only for its own keys", ErrInvalid, v.Authority, k.Authority)
		}
	}
	seen := make(map[Key]bool, len(v.Nodes))
	descs := make([]Descriptor, len(v.Nodes))
	for i, n := range v.Nodes {
		d, err := n.Descriptor.Verify()
		if err != nil {
			return nil, fmt.Errorf("node %d: %w", i, err)
		}
		if seen[d.Identity] {
			return nil, fmt.Errorf("%w: node %s is listed twice", ErrInvalid, d.Identity)
		}
		seen[d.Identity] = true
		if math.IsNaN(n.Performance) || n.Performance < 0 || n.Performance > 1 {
			return nil, fmt.Errorf("%w: node %s: performance %v outside 0..1", ErrInvalid, d.Identity, n.Performance)
		}
		descs[i] = d
	}
	return descs, nil
}
