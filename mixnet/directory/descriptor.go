package directory

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Limits on descriptors. They bound what a registering stranger can make the
// directory parse and store.
const (
	// MaxDescriptorSize is the largest encoded Descriptor accepted: two
	// ML-KEM keys (this rotation's and the next) take 3.2 KB of it.
	MaxDescriptorSize = 8 << 10
	// MaxSignedDescriptorSize bounds a whole SignedDescriptor on the wire
	// (descriptor, base64 signature, JSON framing).
	MaxSignedDescriptorSize = MaxDescriptorSize + 1<<10
	// MaxVersionLength bounds Descriptor.Version.
	MaxVersionLength = 64
)

// descriptorDomain separates descriptor signatures from every other thing an
// identity key signs, so a signature cannot be replayed in another context.
const descriptorDomain = "nym-go/directory/descriptor/v1\x00"

// Errors returned by the verifiers; test for them with errors.Is.
var (
	// ErrBadSignature means a signature did not verify.
	ErrBadSignature = errors.New("signature does not verify")
	// ErrInvalid means the signed content is malformed or insane.
	ErrInvalid = errors.New("invalid")
)

// Capabilities are the roles a node offers. A node in "auto" mode offers all
// three and the directory decides which one it plays each epoch.
type Capabilities struct {
	Mixnode bool `json:"mixnode"`
	Entry   bool `json:"entry"`
	Exit    bool `json:"exit"`
}

// Any reports whether at least one role is offered.
func (c Capabilities) Any() bool { return c.Mixnode || c.Entry || c.Exit }

// Gateway reports whether the node offers a gateway role, which needs a
// clients address.
func (c Capabilities) Gateway() bool { return c.Entry || c.Exit }

// Allows reports whether the capabilities allow role.
func (c Capabilities) Allows(r Role) bool {
	switch r {
	case RoleEntry:
		return c.Entry
	case RoleExit:
		return c.Exit
	case RoleMix:
		return c.Mixnode
	case RoleStandby:
		return c.Any()
	}
	return false
}

func (c Capabilities) String() string {
	var parts []string
	if c.Mixnode {
		parts = append(parts, "mixnode")
	}
	if c.Entry {
		parts = append(parts, "entry")
	}
	if c.Exit {
		parts = append(parts, "exit")
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "+")
}

// SphinxKey is a node's X25519 Sphinx public key for one key rotation.
type SphinxKey struct {
	Rotation uint64 `json:"rotation"`
	Key      Key    `json:"key"`
}

// Descriptor is what a node tells the directory about itself. It is signed by
// the node's identity key (see SignDescriptor).
type Descriptor struct {
	// Identity is the node's ed25519 public key. It names the node, signs the
	// descriptor and is the node's routing address inside Sphinx packets.
	Identity Key `json:"identity"`
	// NoiseKey is the X25519 static key of the node's Noise listener.
	NoiseKey Key `json:"noise_key"`
	// SphinxKeys are the node's Sphinx keys: the current rotation's and, once
	// generated, the next one's; one or two entries with consecutive rotations
	// in increasing order.
	SphinxKeys []SphinxKey `json:"sphinx_keys"`
	// MixnetAddr is host:port of the node's mixnet (node-to-node) listener.
	MixnetAddr string `json:"mixnet_addr"`
	// ClientsAddr is host:port where clients connect; required for gateways.
	ClientsAddr string `json:"clients_addr,omitempty"`
	// WGAddr is IP:port of the gateway's WireGuard door (fast mode): UDP
	// for WireGuard and, on the same port, TCP for registration (a Noise
	// link as on ClientsAddr). An IP literal, never a name: the entry
	// relays clients' UDP only to exits' WGAddr, and a name would let
	// whoever answers for it steer that relay. Empty for nodes without
	// WireGuard.
	WGAddr string `json:"wg_addr,omitempty"`
	// RouterKey is the client identity of the exit's IP packet router, a
	// mixnet client on this gateway: VPN clients address their IP traffic
	// to RouterKey at this node. Empty for nodes that run no router.
	RouterKey *Key `json:"router_key,omitempty"`
	// HTTPAddr is host:port of the node's HTTP API; the directory probes
	// http://HTTPAddr/api/v1/health.
	HTTPAddr     string       `json:"http_addr"`
	Capabilities Capabilities `json:"capabilities"`
	// Version is the node's software version, informational.
	Version string `json:"version"`
	// IssuedAt is when the node signed the descriptor. The directory refuses
	// descriptors more than its clock-skew allowance away from its own clock,
	// and older than one it already holds.
	IssuedAt time.Time `json:"issued_at"`
	// KEMKeys are the ML-KEM-768 keys of the node's hybrid (post-quantum)
	// link handshakes, for node-to-node and client-to-gateway links alike,
	// one per Sphinx key rotation like SphinxKeys: the current rotation's
	// and the next one's, one or two entries with consecutive rotations in
	// increasing order. The node deletes each key when its rotation (and
	// the overlap after it) ends, which gives the links forward secrecy at
	// rotation granularity. A descriptor without any stays valid: its node
	// predates post-quantum links, and peers talk to it with the classical
	// handshake.
	KEMKeys []RotationKEMKey `json:"kem_keys,omitempty"`
	// RequiresPQ says the node refuses classical link handshakes and dials
	// only peers that publish KEM keys. It needs KEMKeys.
	RequiresPQ bool `json:"requires_pq,omitempty"`
}

// KEMKeyFor returns the node's KEM key for rotation.
func (d *Descriptor) KEMKeyFor(rotation uint64) (KEMKey, bool) {
	return kemKeyFor(d.KEMKeys, rotation)
}

// SphinxKeyFor returns the node's Sphinx key for rotation.
func (d *Descriptor) SphinxKeyFor(rotation uint64) (Key, bool) {
	return sphinxKeyFor(d.SphinxKeys, rotation)
}

// Node returns the topology entry that publishes d with the given
// performance score (0..1, from the authority's probes).
func (d *Descriptor) Node(performance float64) Node {
	return Node{
		Identity:     d.Identity,
		NoiseKey:     d.NoiseKey,
		SphinxKeys:   append([]SphinxKey(nil), d.SphinxKeys...),
		MixnetAddr:   d.MixnetAddr,
		ClientsAddr:  d.ClientsAddr,
		WGAddr:       d.WGAddr,
		RouterKey:    d.RouterKey,
		HTTPAddr:     d.HTTPAddr,
		Capabilities: d.Capabilities,
		Version:      d.Version,
		Performance:  performance,
		KEMKeys:      append([]RotationKEMKey(nil), d.KEMKeys...),
		RequiresPQ:   d.RequiresPQ,
	}
}

// SignedDescriptor is a Descriptor as the node encoded it, with the node's
// signature over descriptorDomain ‖ Descriptor. The directory keeps the exact
// bytes, so the signature stays checkable later.
type SignedDescriptor struct {
	Descriptor json.RawMessage `json:"descriptor"`
	Signature  []byte          `json:"signature"`
}

// SignDescriptor encodes d and signs it with priv, which must be the private
// key of d.Identity.
func SignDescriptor(priv ed25519.PrivateKey, d Descriptor) (SignedDescriptor, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return SignedDescriptor{}, fmt.Errorf("sign descriptor: private key has %d bytes, want %d", len(priv), ed25519.PrivateKeySize)
	}
	if !bytes.Equal(priv.Public().(ed25519.PublicKey), d.Identity[:]) {
		return SignedDescriptor{}, errors.New("sign descriptor: private key does not match the descriptor's identity")
	}
	if err := d.validate(); err != nil {
		return SignedDescriptor{}, fmt.Errorf("sign descriptor: %w", err)
	}
	raw, err := json.Marshal(d)
	if err != nil {
		return SignedDescriptor{}, fmt.Errorf("sign descriptor: encode: %w", err)
	}
	if len(raw) > MaxDescriptorSize {
		return SignedDescriptor{}, fmt.Errorf("sign descriptor: encoded descriptor is %d bytes, limit %d", len(raw), MaxDescriptorSize)
	}
	sig := ed25519.Sign(priv, signedMessage(descriptorDomain, raw))
	return SignedDescriptor{Descriptor: raw, Signature: sig}, nil
}

// Verify decodes the descriptor, checks that its fields are sane and that it
// is signed by the identity it names, and returns it. It does not judge
// IssuedAt against a clock; the directory does that.
func (sd SignedDescriptor) Verify() (Descriptor, error) {
	if len(sd.Descriptor) == 0 {
		return Descriptor{}, fmt.Errorf("descriptor: %w: empty", ErrInvalid)
	}
	if len(sd.Descriptor) > MaxDescriptorSize {
		return Descriptor{}, fmt.Errorf("descriptor: %w: %d bytes, limit %d", ErrInvalid, len(sd.Descriptor), MaxDescriptorSize)
	}
	if len(sd.Signature) != ed25519.SignatureSize {
		return Descriptor{}, fmt.Errorf("descriptor: %w: signature has %d bytes, want %d", ErrInvalid, len(sd.Signature), ed25519.SignatureSize)
	}
	var d Descriptor
	if err := json.Unmarshal(sd.Descriptor, &d); err != nil {
		return Descriptor{}, fmt.Errorf("descriptor: %w: decode: %v", ErrInvalid, err)
	}
	if err := d.validate(); err != nil {
		return Descriptor{}, fmt.Errorf("descriptor of %s: %w", d.Identity, err)
	}
	if !ed25519.Verify(d.Identity.Ed25519(), signedMessage(descriptorDomain, sd.Descriptor), sd.Signature) {
		return Descriptor{}, fmt.Errorf("descriptor of %s: %w (it must be signed by the identity it names)", d.Identity, ErrBadSignature)
	}
	return d, nil
}

// validate checks everything about a descriptor that needs no clock.
func (d *Descriptor) validate() error {
	if d.Identity.IsZero() {
		return fmt.Errorf("%w: identity is missing", ErrInvalid)
	}
	if d.NoiseKey.IsZero() {
		return fmt.Errorf("%w: noise key is missing", ErrInvalid)
	}
	if err := validateSphinxKeys(d.SphinxKeys); err != nil {
		return err
	}
	if err := validateKEMKeys(d.KEMKeys, d.RequiresPQ); err != nil {
		return err
	}
	if !d.Capabilities.Any() {
		return fmt.Errorf("%w: no capability offered (want mixnode, entry and/or exit)", ErrInvalid)
	}
	if err := validateHostPort("mixnet address", d.MixnetAddr); err != nil {
		return err
	}
	if err := validateHostPort("http address", d.HTTPAddr); err != nil {
		return err
	}
	if d.ClientsAddr != "" || d.Capabilities.Gateway() {
		if err := validateHostPort("clients address", d.ClientsAddr); err != nil {
			return fmt.Errorf("%w (gateways need one)", err)
		}
	}
	if err := validateWGAddr(d.WGAddr, d.Capabilities.Gateway()); err != nil {
		return err
	}
	if len(d.Version) > MaxVersionLength {
		return fmt.Errorf("%w: version is %d bytes, limit %d", ErrInvalid, len(d.Version), MaxVersionLength)
	}
	for _, r := range d.Version {
		if r < 0x20 || r > 0x7e {
			return fmt.Errorf("%w: version %q has non-printable characters", ErrInvalid, d.Version)
		}
	}
	if d.IssuedAt.IsZero() {
		return fmt.Errorf("%w: issued_at is missing", ErrInvalid)
	}
	return nil
}

// validateWGAddr checks an optional WireGuard address: an IP literal (not
// unspecified, no zone) and a port 1..65535, announced only by gateways.
func validateWGAddr(s string, gateway bool) error {
	if s == "" {
		return nil
	}
	if !gateway {
		return fmt.Errorf("%w: wireguard address %q on a node that is no gateway", ErrInvalid, truncate(s, 64))
	}
	if err := validateHostPort("wireguard address", s); err != nil {
		return err
	}
	if _, err := netip.ParseAddrPort(s); err != nil {
		return fmt.Errorf("%w: wireguard address %q: want IP:port, not a name", ErrInvalid, truncate(s, 64))
	}
	return nil
}

// WGAddrPort returns the node's WireGuard address, and false if it announces
// none (or, impossibly for a checked topology, a malformed one).
func (n *Node) WGAddrPort() (netip.AddrPort, bool) {
	if n.WGAddr == "" {
		return netip.AddrPort{}, false
	}
	ap, err := netip.ParseAddrPort(n.WGAddr)
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
}

// validateSphinxKeys accepts one key, or two for consecutive rotations.
func validateSphinxKeys(keys []SphinxKey) error {
	switch {
	case len(keys) == 0:
		return fmt.Errorf("%w: no sphinx key", ErrInvalid)
	case len(keys) > 2:
		return fmt.Errorf("%w: %d sphinx keys, want the current and at most the next rotation's", ErrInvalid, len(keys))
	}
	for i, k := range keys {
		if k.Key.IsZero() {
			return fmt.Errorf("%w: sphinx key for rotation %d is zero", ErrInvalid, k.Rotation)
		}
		if i > 0 && (keys[i-1].Rotation == ^uint64(0) || k.Rotation != keys[i-1].Rotation+1) {
			return fmt.Errorf("%w: sphinx keys for rotations %d and %d are not consecutive", ErrInvalid, keys[i-1].Rotation, k.Rotation)
		}
	}
	return nil
}

func sphinxKeyFor(keys []SphinxKey, rotation uint64) (Key, bool) {
	for _, k := range keys {
		if k.Rotation == rotation {
			return k.Key, true
		}
	}
	return Key{}, false
}

// validateHostPort checks that s is host:port with a host others can dial:
// a DNS name or an IP that is not unspecified (0.0.0.0 means "any" to a
// listener but nothing to a dialer), and a port in 1..65535.
func validateHostPort(what, s string) error {
	if s == "" {
		return fmt.Errorf("%w: %s is missing", ErrInvalid, what)
	}
	if len(s) > 261 { // 253-byte name, colon, 5-digit port, brackets
		return fmt.Errorf("%w: %s is %d bytes long", ErrInvalid, what, len(s))
	}
	host, portStr, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%w: %s %q: %v", ErrInvalid, what, s, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 {
		return fmt.Errorf("%w: %s %q: port must be 1..65535", ErrInvalid, what, s)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.IsUnspecified() {
			return fmt.Errorf("%w: %s %q: unspecified address; announce one peers can dial", ErrInvalid, what, s)
		}
		if ip.Zone() != "" {
			return fmt.Errorf("%w: %s %q: zoned addresses mean nothing to other hosts", ErrInvalid, what, s)
		}
		return nil
	}
	if !validHostname(host) {
		return fmt.Errorf("%w: %s %q: host is neither an IP address nor a DNS name", ErrInvalid, what, s)
	}
	return nil
}

func validHostname(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// signedMessage is domain ‖ body, the bytes a signature covers.
func signedMessage(domain string, body []byte) []byte {
	msg := make([]byte, 0, len(domain)+len(body))
	msg = append(msg, domain...)
	return append(msg, body...)
}
