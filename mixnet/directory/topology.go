package directory

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
)

// Limits on topologies, so a client never parses an unbounded document.
const (
	// MaxTopologySize is the largest encoded Topology accepted.
	// 10000 nodes (the directory's default MaxNodes) of about 4.1 KB each,
	// their two 1.6 KB ML-KEM keys (this rotation's and the next) included,
	// with room to spare.
	MaxTopologySize = 64 << 20
	// MaxTopologyNodes bounds the nodes a topology may list across all roles.
	MaxTopologyNodes = 20000
)

// topologyDomain separates topology signatures from anything else the
// directory key signs.
const topologyDomain = "nym-go/directory/topology/v1\x00"

// ErrUntrustedDirectory means a topology was not signed by the pinned
// directory key.
var ErrUntrustedDirectory = errors.New("topology is not signed by the pinned directory key")

// Errors of CheckFresh.
var (
	// ErrStaleTopology means a topology's epoch ended more than one epoch
	// ago: an old document, replayed or served by a stuck directory.
	ErrStaleTopology = errors.New("stale topology")
	// ErrFutureTopology means a topology was issued, or its epoch starts,
	// further in the future than the allowed clock skew.
	ErrFutureTopology = errors.New("topology from the future")
)

// DefaultMaxClockSkew is how far ahead of the local clock a topology may be
// issued before CheckFresh refuses it; the directory allows descriptors the
// same skew.
const DefaultMaxClockSkew = 5 * time.Minute

// Role is what a node does during an epoch.
type Role int

const (
	// RoleNone: the node is not in the topology.
	RoleNone Role = iota
	// RoleEntry: entry gateway; clients connect to it.
	RoleEntry
	// RoleExit: exit gateway; the final Sphinx hop, hands traffic to the
	// internet.
	RoleExit
	// RoleMix: mix node in one of the three layers.
	RoleMix
	// RoleStandby: healthy but not routed through this epoch.
	RoleStandby
)

func (r Role) String() string {
	switch r {
	case RoleNone:
		return "none"
	case RoleEntry:
		return "entry"
	case RoleExit:
		return "exit"
	case RoleMix:
		return "mix"
	case RoleStandby:
		return "standby"
	}
	return fmt.Sprintf("Role(%d)", int(r))
}

// Node is a node as the topology lists it: what a client or a node needs to
// reach it and route through it.
type Node struct {
	Identity Key `json:"identity"`
	NoiseKey Key `json:"noise_key"`
	// SphinxKeys holds the keys the node announced, for the topology's
	// rotation and, when known, the next one.
	SphinxKeys  []SphinxKey `json:"sphinx_keys"`
	MixnetAddr  string      `json:"mixnet_addr"`
	ClientsAddr string      `json:"clients_addr,omitempty"`
	// WGAddr is the gateway's WireGuard IP:port (see Descriptor.WGAddr).
	WGAddr string `json:"wg_addr,omitempty"`
	// RouterKey, on exit-capable nodes, names their IP packet router.
	RouterKey    *Key         `json:"router_key,omitempty"`
	HTTPAddr     string       `json:"http_addr"`
	Capabilities Capabilities `json:"capabilities"`
	Version      string       `json:"version,omitempty"`
	// Performance is the node's recent probe success rate, 0..1. Clients may
	// weight their choice of route by it.
	Performance float64 `json:"performance"`
	// KEMKeys and RequiresPQ are the node's post-quantum link keys (one
	// per rotation, see Descriptor.KEMKeys) and policy, from its
	// descriptor. An initiator encapsulates to KEMKeyFor(Topology.Rotation).
	KEMKeys    []RotationKEMKey `json:"kem_keys,omitempty"`
	RequiresPQ bool             `json:"requires_pq,omitempty"`
}

// KEMKeyFor returns the node's KEM key for rotation.
func (n *Node) KEMKeyFor(rotation uint64) (KEMKey, bool) {
	return kemKeyFor(n.KEMKeys, rotation)
}

// SphinxKeyFor returns the node's Sphinx key for rotation.
func (n *Node) SphinxKeyFor(rotation uint64) (Key, bool) {
	return sphinxKeyFor(n.SphinxKeys, rotation)
}

// Topology is the directory's view of the network for one epoch.
type Topology struct {
	Epoch      uint64    `json:"epoch"`
	EpochStart time.Time `json:"epoch_start"`
	EpochEnd   time.Time `json:"epoch_end"`
	// EpochLength is EpochEnd − EpochStart (nanoseconds on the wire).
	EpochLength time.Duration `json:"epoch_length_ns"`
	// Rotation is the Sphinx key rotation in force: Epoch / RotationEpochs.
	// Its parity travels in link frames.
	Rotation       uint64 `json:"rotation"`
	RotationEpochs uint64 `json:"rotation_epochs"`
	// DirectoryKey is the ed25519 key that signs this topology.
	DirectoryKey Key `json:"directory_key"`
	// IssuedAt is when this document was signed. Within one epoch the
	// directory reissues the topology only when an assigned node changes its
	// keys or addresses, or while the network is still incomplete.
	IssuedAt time.Time `json:"issued_at"`

	Entry []Node `json:"entry"`
	Exit  []Node `json:"exit"`
	// Layers[0] is mix layer 1, Layers[2] layer 3.
	Layers  [3][]Node `json:"layers"`
	Standby []Node    `json:"standby"`

	// Issuers are the authorities' public keys for bandwidth tickets, in
	// CompareIssuerKeys order (see IssuerKey).
	Issuers []IssuerKey `json:"issuers,omitempty"`
	// Monitors are the authorities' loop monitor link keys, in
	// CompareMonitorKeys order: gateways ask them for no ticket.
	Monitors []MonitorKey `json:"monitors,omitempty"`

	// index maps identities to where they sit; built by Verify and
	// SignTopology. Lookups fall back to a scan when it is nil.
	index map[Key]nodeRef
}

type nodeRef struct {
	role  Role
	layer int // 1..3 for RoleMix
	i     int
}

// list returns the slice holding a role's nodes.
func (t *Topology) list(role Role, layer int) []Node {
	switch role {
	case RoleEntry:
		return t.Entry
	case RoleExit:
		return t.Exit
	case RoleMix:
		if layer >= 1 && layer <= 3 {
			return t.Layers[layer-1]
		}
	case RoleStandby:
		return t.Standby
	}
	return nil
}

// each calls f for every node with its role and layer, stopping when f
// returns false.
func (t *Topology) each(f func(n *Node, ref nodeRef) bool) {
	visit := func(nodes []Node, role Role, layer int) bool {
		for i := range nodes {
			if !f(&nodes[i], nodeRef{role: role, layer: layer, i: i}) {
				return false
			}
		}
		return true
	}
	if !visit(t.Entry, RoleEntry, 0) || !visit(t.Exit, RoleExit, 0) {
		return
	}
	for l := range t.Layers {
		if !visit(t.Layers[l], RoleMix, l+1) {
			return
		}
	}
	visit(t.Standby, RoleStandby, 0)
}

func (t *Topology) find(id Key) (nodeRef, bool) {
	if t.index != nil {
		ref, ok := t.index[id]
		return ref, ok
	}
	var found nodeRef
	ok := false
	t.each(func(n *Node, ref nodeRef) bool {
		if n.Identity == id {
			found, ok = ref, true
			return false
		}
		return true
	})
	return found, ok
}

// NodeByIdentity returns the node with identity id, in any role.
func (t *Topology) NodeByIdentity(id Key) (Node, bool) {
	ref, ok := t.find(id)
	if !ok {
		return Node{}, false
	}
	return t.list(ref.role, ref.layer)[ref.i], true
}

// RoleOf returns the role of node id this epoch, and for RoleMix its layer
// (1..3; 0 otherwise). A node not in the topology has RoleNone.
func (t *Topology) RoleOf(id Key) (role Role, layer int) {
	ref, ok := t.find(id)
	if !ok {
		return RoleNone, 0
	}
	return ref.role, ref.layer
}

// SphinxKeyFor returns the Sphinx key node id announced for rotation.
func (t *Topology) SphinxKeyFor(id Key, rotation uint64) (Key, bool) {
	ref, ok := t.find(id)
	if !ok {
		return Key{}, false
	}
	return t.list(ref.role, ref.layer)[ref.i].SphinxKeyFor(rotation)
}

// Routable reports, as an error naming what is missing, whether a client can
// build a route: at least one entry, one exit and one node in every layer.
func (t *Topology) Routable() error {
	var missing []string
	if len(t.Entry) == 0 {
		missing = append(missing, "entry gateways")
	}
	if len(t.Exit) == 0 {
		missing = append(missing, "exit gateways")
	}
	for l := range t.Layers {
		if len(t.Layers[l]) == 0 {
			missing = append(missing, fmt.Sprintf("mix layer %d", l+1))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("epoch %d topology has no %v", t.Epoch, missing)
	}
	return nil
}

// Contains reports whether now falls within the topology's epoch; a client
// holding a topology that no longer does should fetch a fresh one.
func (t *Topology) Contains(now time.Time) bool {
	return !now.Before(t.EpochStart) && now.Before(t.EpochEnd)
}

// CheckFresh reports, as an error naming the epoch, its bounds and now,
// whether a client or node whose clock reads now may use the topology.
//
// A signature proves who made a document, not when it is being served: an
// old topology replayed by whoever sits between a client and the directory
// still verifies. So a topology whose epoch ended more than one epoch length
// before now is refused. The one epoch of slack covers a directory that is a
// moment late with the next document and the epoch boundary, during which
// nodes still honour the previous epoch's routes. A topology issued, or whose
// epoch starts, more than skew after now is refused too: its maker's clock is
// wrong, or it was prepared to be replayed later.
func (t *Topology) CheckFresh(now time.Time, skew time.Duration) error {
	const layout = time.RFC3339
	if limit := t.EpochEnd.Add(t.EpochLength); now.After(limit) {
		return fmt.Errorf("%w: epoch %d ended at %s, more than one epoch (%s) before now (%s)",
			ErrStaleTopology, t.Epoch, t.EpochEnd.UTC().Format(layout), t.EpochLength, now.UTC().Format(layout))
	}
	if ahead := t.IssuedAt.Sub(now); ahead > skew {
		return fmt.Errorf("%w: epoch %d topology issued at %s, %s after now (%s); clock skew allowed %s",
			ErrFutureTopology, t.Epoch, t.IssuedAt.UTC().Format(layout), ahead.Round(time.Second), now.UTC().Format(layout), skew)
	}
	if ahead := t.EpochStart.Sub(now); ahead > skew {
		return fmt.Errorf("%w: epoch %d starts at %s, %s after now (%s); clock skew allowed %s",
			ErrFutureTopology, t.Epoch, t.EpochStart.UTC().Format(layout), ahead.Round(time.Second), now.UTC().Format(layout), skew)
	}
	return nil
}

// SignedTopology is a Topology as the directory encoded it, with the
// directory's signature over topologyDomain ‖ Topology.
type SignedTopology struct {
	Topology  json.RawMessage `json:"topology"`
	Signature []byte          `json:"signature"`
}

// SignTopology encodes t and signs it with the directory key priv, after
// setting t.DirectoryKey to priv's public key. The directory uses it; tests
// of other packages can use it to make topologies of their own.
func SignTopology(priv ed25519.PrivateKey, t *Topology) (SignedTopology, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return SignedTopology{}, fmt.Errorf("sign topology: private key has %d bytes, want %d", len(priv), ed25519.PrivateKeySize)
	}
	t.DirectoryKey = Key(priv.Public().(ed25519.PublicKey))
	if err := t.validate(); err != nil {
		return SignedTopology{}, fmt.Errorf("sign topology: %w", err)
	}
	raw, err := json.Marshal(t)
	if err != nil {
		return SignedTopology{}, fmt.Errorf("sign topology: encode: %w", err)
	}
	if len(raw) > MaxTopologySize {
		return SignedTopology{}, fmt.Errorf("sign topology: encoded topology is %d bytes, limit %d", len(raw), MaxTopologySize)
	}
	return SignedTopology{Topology: raw, Signature: ed25519.Sign(priv, signedMessage(topologyDomain, raw))}, nil
}

// Verify checks that the topology is signed by pub, the directory key the
// caller pinned, and is well formed, and returns it. A topology signed by any
// other key is refused with ErrUntrustedDirectory.
func (st SignedTopology) Verify(pub ed25519.PublicKey) (*Topology, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("verify topology: pinned directory key has %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	pinned := Key(pub)
	if len(st.Topology) == 0 || len(st.Topology) > MaxTopologySize {
		return nil, fmt.Errorf("topology: %w: %d bytes (limit %d)", ErrInvalid, len(st.Topology), MaxTopologySize)
	}
	if len(st.Signature) != ed25519.SignatureSize {
		return nil, fmt.Errorf("topology: %w: signature has %d bytes, want %d", ErrInvalid, len(st.Signature), ed25519.SignatureSize)
	}
	// Decode before checking the signature only to say which key signed it;
	// nothing decoded is trusted until the signature checks out.
	t := new(Topology)
	decodeErr := json.Unmarshal(st.Topology, t)
	if !ed25519.Verify(pub, signedMessage(topologyDomain, st.Topology), st.Signature) {
		if decodeErr == nil && t.DirectoryKey != pinned {
			return nil, fmt.Errorf("%w: it names directory %s, pinned key is %s", ErrUntrustedDirectory, t.DirectoryKey, pinned)
		}
		return nil, fmt.Errorf("%w: %w under pinned key %s", ErrUntrustedDirectory, ErrBadSignature, pinned)
	}
	if decodeErr != nil {
		return nil, fmt.Errorf("topology: %w: decode: %v", ErrInvalid, decodeErr)
	}
	if err := t.check(pinned); err != nil {
		return nil, err
	}
	return t, nil
}

// check judges a topology decoded from a document the pinned key signed.
// It is apart from Verify so the fuzz target reaches it without a signature
// per input.
func (t *Topology) check(pinned Key) error {
	if t.DirectoryKey != pinned {
		return fmt.Errorf("%w: signed by the pinned key but names directory %s", ErrUntrustedDirectory, t.DirectoryKey)
	}
	if err := t.validate(); err != nil {
		return fmt.Errorf("topology of epoch %d: %w", t.Epoch, err)
	}
	return nil
}

// validate checks a topology's consistency and builds its index.
func (t *Topology) validate() error {
	if t.RotationEpochs == 0 {
		return fmt.Errorf("%w: rotation_epochs is 0", ErrInvalid)
	}
	if t.Rotation != t.Epoch/t.RotationEpochs {
		return fmt.Errorf("%w: rotation %d does not match epoch %d / %d", ErrInvalid, t.Rotation, t.Epoch, t.RotationEpochs)
	}
	if t.EpochLength <= 0 || !t.EpochEnd.Equal(t.EpochStart.Add(t.EpochLength)) {
		return fmt.Errorf("%w: epoch [%s, %s) does not last epoch_length %s", ErrInvalid, t.EpochStart, t.EpochEnd, t.EpochLength)
	}
	if t.DirectoryKey.IsZero() {
		return fmt.Errorf("%w: directory key is missing", ErrInvalid)
	}
	total := len(t.Entry) + len(t.Exit) + len(t.Standby)
	for _, l := range t.Layers {
		total += len(l)
	}
	if total > MaxTopologyNodes {
		return fmt.Errorf("%w: %d nodes, limit %d", ErrInvalid, total, MaxTopologyNodes)
	}
	if err := validateIssuerKeys(t.Issuers); err != nil {
		return err
	}
	if err := validateMonitorKeys(t.Monitors); err != nil {
		return err
	}
	index := make(map[Key]nodeRef, total)
	var err error
	t.each(func(n *Node, ref nodeRef) bool {
		if _, dup := index[n.Identity]; dup {
			err = fmt.Errorf("%w: node %s is listed twice", ErrInvalid, n.Identity)
			return false
		}
		index[n.Identity] = ref
		if err = n.Validate(ref.role, t.Rotation); err != nil {
			err = fmt.Errorf("%s node %s: %w", ref.role, n.Identity, err)
			return false
		}
		return true
	})
	if err != nil {
		return err
	}
	t.index = index
	return nil
}

// Validate checks one topology entry as a client will when it verifies the
// topology: the authority publishes only entries that pass. Nodes with a role
// must carry a Sphinx key for the rotation in force: a client cannot route
// through them otherwise.
func (n *Node) Validate(role Role, rotation uint64) error {
	if n.Identity.IsZero() || n.NoiseKey.IsZero() {
		return fmt.Errorf("%w: identity or noise key missing", ErrInvalid)
	}
	if err := validateSphinxKeys(n.SphinxKeys); err != nil {
		return err
	}
	if err := validateKEMKeys(n.KEMKeys, n.RequiresPQ); err != nil {
		return err
	}
	if role != RoleStandby {
		if _, ok := n.SphinxKeyFor(rotation); !ok {
			return fmt.Errorf("%w: no sphinx key for rotation %d", ErrInvalid, rotation)
		}
	}
	if err := validateHostPort("mixnet address", n.MixnetAddr); err != nil {
		return err
	}
	if err := validateHostPort("http address", n.HTTPAddr); err != nil {
		return err
	}
	if role == RoleEntry || role == RoleExit || n.ClientsAddr != "" {
		if err := validateHostPort("clients address", n.ClientsAddr); err != nil {
			return err
		}
	}
	if err := validateWGAddr(n.WGAddr, n.Capabilities.Gateway()); err != nil {
		return err
	}
	if !n.Capabilities.Allows(role) {
		return fmt.Errorf("%w: assigned %s but offers %s", ErrInvalid, role, n.Capabilities)
	}
	if math.IsNaN(n.Performance) || n.Performance < 0 || n.Performance > 1 {
		return fmt.Errorf("%w: performance %v outside 0..1", ErrInvalid, n.Performance)
	}
	if len(n.Version) > MaxVersionLength {
		return fmt.Errorf("%w: version too long", ErrInvalid)
	}
	return nil
}

// EqualRouting reports whether two entries route identically, ignoring the
// performance score, so the authority reissues a topology only when a client
// would route differently.
func (n *Node) EqualRouting(o *Node) bool {
	if n.Identity != o.Identity || n.NoiseKey != o.NoiseKey || n.MixnetAddr != o.MixnetAddr ||
		n.ClientsAddr != o.ClientsAddr || n.WGAddr != o.WGAddr || n.HTTPAddr != o.HTTPAddr || n.Capabilities != o.Capabilities ||
		n.Version != o.Version || len(n.SphinxKeys) != len(o.SphinxKeys) ||
		(n.RouterKey == nil) != (o.RouterKey == nil) || (n.RouterKey != nil && *n.RouterKey != *o.RouterKey) {
		return false
	}
	if len(n.KEMKeys) != len(o.KEMKeys) || n.RequiresPQ != o.RequiresPQ {
		return false
	}
	for i := range n.KEMKeys {
		if n.KEMKeys[i].Rotation != o.KEMKeys[i].Rotation || !bytes.Equal(n.KEMKeys[i].Key, o.KEMKeys[i].Key) {
			return false
		}
	}
	for i := range n.SphinxKeys {
		if n.SphinxKeys[i] != o.SphinxKeys[i] {
			return false
		}
	}
	return true
}
