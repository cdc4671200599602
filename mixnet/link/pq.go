package link

import (
	"crypto/mlkem"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"net"
	"sync"
)

// Post-quantum (hybrid) links.
//
// A responder that has ML-KEM-768 keys (KeyPair.KEMKeys or KeyPair.KEM,
// published in its signed descriptor) accepts the hybrid handshake: the initiator
// encapsulates to that key, sends the ciphertext in message 1's payload
// (encrypted under es, so observers see neither it nor the key id), and the
// 32-byte shared secret becomes the PSK of Noise_XKpsk2. The session keys
// then depend on both the X25519 exchanges and the ML-KEM secret: breaking
// X25519 alone, as a future quantum computer recording traffic today
// could, no longer opens the link. The PSK is mixed at the end of message 2,
// so an initiator whose ciphertext the responder could not decapsulate learns
// it at message 2 instead of after sending its identity.
//
// Why crypto/mlkem rather than X-Wing (circl): Noise already runs X25519, so
// X-Wing's own X25519 would be paid twice for nothing; crypto/mlkem is in
// the standard library (no new dependency, FIPS 203 code reviewed with Go)
// and costs about 0.1 ms per handshake (BenchmarkHandshake), once per link.
//
// Upgrades and downgrades. The initiator chooses the kind from what it
// knows of the responder before connecting: hybrid when the responder's
// descriptor (signed by its identity) carries a KEM key, classical
// otherwise. The two kinds differ in protocol name (XK vs XKpsk2) and
// prologue, both hashed into every handshake message, and the responder
// tells them apart by message 1's length (48 bytes classical, 1144
// hybrid). So in a mixed network new nodes talk hybrid to each other and
// classical to old ones, while a man in the middle who strips the KEM part
// of a hybrid message 1 leaves a message that authenticates as neither kind:
// the responder drops it, and the initiator, which only accepts a hybrid
// message 2, fails too. KeyPair.RequirePQ closes the remaining gap for
// operators who want it: such a node refuses classical initiators and does
// not dial peers without a KEM key.
//
// Key lifetime: a node has one KEM key per Sphinx key rotation
// (mixnet/nodekey), created and deleted with that rotation's Sphinx key. Its
// descriptor announces the current and the next rotation's KEM keys; an
// initiator encapsulates to the key of the rotation its topology says is in
// force and names it by its key id in message 1. The responder holds
// several keys at once (KeyPair.KEMKeys: current, next and, during the
// first epoch of a rotation, previous) and decapsulates with the one named;
// an unknown id (a deleted key, or one never ours) fails that handshake
// only. So a link's secrecy against a future quantum attacker who also
// steals the node's keys is forward at rotation granularity: once a
// rotation's KEM key is deleted, the links made with it stay closed to
// whoever seizes the node later.

// hybridPrologue replaces prologue in hybrid handshakes; together with the
// psk2 protocol name it binds the choice of kind into the handshake hash.
const hybridPrologue = "nym-go/link/1+mlkem768"

// pskPlacement puts the ML-KEM secret at the end of message 2.
const pskPlacement = 2

// Sizes on the wire.
const (
	// KEMPublicKeySize is the size of an ML-KEM-768 encapsulation key as
	// published in a descriptor.
	KEMPublicKeySize = mlkem.EncapsulationKeySize768
	// KEMSeedSize is the size of the seed a KEMKey is stored as.
	KEMSeedSize = mlkem.SeedSize
	// kemPayloadSize is message 1's payload in a hybrid handshake.
	kemPayloadSize = len(KEMKeyID{}) + mlkem.CiphertextSize768
	// classicalMessage1Size is an XK message 1 with an empty payload:
	// ephemeral key and AEAD tag.
	classicalMessage1Size = 32 + 16
	// hybridMessage1Size is message 1 carrying a kemPayload.
	hybridMessage1Size = 32 + kemPayloadSize + 16
)

// ErrClassicalRefused is wrapped by a handshake that failed because a peer
// that requires post-quantum links met one that offered only the classical
// handshake.
var ErrClassicalRefused = errors.New("classical handshake refused: post-quantum links required")

// KEMKeyID names a responder's KEM key in message 1: the first 8 bytes of
// SHA-256 of its encapsulation key.
type KEMKeyID [8]byte

func kemKeyID(ek []byte) KEMKeyID {
	sum := sha256.Sum256(ek)
	return KEMKeyID(sum[:8])
}

// KEMKey is a responder's ML-KEM-768 decapsulation key.
type KEMKey struct {
	dk *mlkem.DecapsulationKey768
	id KEMKeyID
}

// NewKEMKey makes a KEM key from its KEMSeedSize-byte seed.
func NewKEMKey(seed []byte) (*KEMKey, error) {
	return kemKey(mlkem.NewDecapsulationKey768(seed))
}

// GenerateKEMKey makes a fresh KEM key.
func GenerateKEMKey() (*KEMKey, error) {
	return kemKey(mlkem.GenerateKey768())
}

func kemKey(dk *mlkem.DecapsulationKey768, err error) (*KEMKey, error) {
	if err != nil {
		return nil, fmt.Errorf("link: KEM key: %w", err)
	}
	return &KEMKey{dk: dk, id: kemKeyID(dk.EncapsulationKey().Bytes())}, nil
}

// Seed returns the seed the key can be stored as and rebuilt from.
func (k *KEMKey) Seed() []byte { return k.dk.Bytes() }

// PublicKey returns the encapsulation key to publish.
func (k *KEMKey) PublicKey() []byte { return k.dk.EncapsulationKey().Bytes() }

// ID returns the key's id.
func (k *KEMKey) ID() KEMKeyID { return k.id }

// KEMPublicKey is a responder's published ML-KEM-768 encapsulation key.
type KEMPublicKey struct {
	ek *mlkem.EncapsulationKey768
	id KEMKeyID
}

// ParseKEMPublicKey checks and decodes a published encapsulation key.
func ParseKEMPublicKey(b []byte) (*KEMPublicKey, error) {
	ek, err := mlkem.NewEncapsulationKey768(b)
	if err != nil {
		return nil, fmt.Errorf("link: KEM public key: %w", err)
	}
	return &KEMPublicKey{ek: ek, id: kemKeyID(b)}, nil
}

// Bytes returns the encoded encapsulation key.
func (k *KEMPublicKey) Bytes() []byte { return k.ek.Bytes() }

// kemPayload is message 1's payload in a hybrid handshake:
//
//	KeyID      [8]byte    which of the responder's KEM keys was used
//	Ciphertext [1088]byte ML-KEM-768 ciphertext
type kemPayload struct {
	KeyID      KEMKeyID
	Ciphertext [mlkem.CiphertextSize768]byte
}

// MarshalBinary encodes p.
func (p *kemPayload) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, kemPayloadSize)
	b = append(b, p.KeyID[:]...)
	return append(b, p.Ciphertext[:]...), nil
}

// UnmarshalBinary decodes b, which must be exactly kemPayloadSize bytes.
func (p *kemPayload) UnmarshalBinary(b []byte) error {
	if len(b) != kemPayloadSize {
		return fmt.Errorf("KEM payload is %d bytes, want %d", len(b), kemPayloadSize)
	}
	copy(p.KeyID[:], b)
	copy(p.Ciphertext[:], b[len(p.KeyID):])
	return nil
}

// kemEncap is an initiator's half of the KEM: what goes into message 1 and
// the secret that becomes the PSK.
type kemEncap struct {
	payload kemPayload
	secret  []byte
}

// encapsulate runs ML-KEM encapsulation to pk.
func encapsulate(pk *KEMPublicKey) *kemEncap {
	secret, ct := pk.ek.Encapsulate()
	e := &kemEncap{secret: secret}
	e.payload.KeyID = pk.id
	copy(e.payload.Ciphertext[:], ct)
	return e
}

// ErrUnknownKEMKey is wrapped by a responder's handshake failure when
// message 1 names a KEM key the responder does not hold: one already
// deleted (its rotation is over) or never its own.
var ErrUnknownKEMKey = errors.New("message 1 names a KEM key this node does not hold")

// KEMKeyring is the set of KEM keys a responder accepts, named by key id.
// A node replaces its contents as rotations pass (Set) while its listener
// keeps serving; it is safe for concurrent use.
type KEMKeyring struct {
	mu   sync.RWMutex
	keys map[KEMKeyID]*KEMKey
}

// NewKEMKeyring makes a keyring holding keys.
func NewKEMKeyring(keys ...*KEMKey) *KEMKeyring {
	r := &KEMKeyring{}
	r.Set(keys...)
	return r
}

// Set makes keys the only keys accepted. Keys left out are forgotten:
// handshakes naming them fail from now on.
func (r *KEMKeyring) Set(keys ...*KEMKey) {
	m := make(map[KEMKeyID]*KEMKey, len(keys))
	for _, k := range keys {
		m[k.id] = k
	}
	r.mu.Lock()
	r.keys = m
	r.mu.Unlock()
}

// Add accepts keys too, keeping those already held.
func (r *KEMKeyring) Add(keys ...*KEMKey) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := make(map[KEMKeyID]*KEMKey, len(r.keys)+len(keys))
	maps.Copy(m, r.keys)
	for _, k := range keys {
		m[k.id] = k
	}
	r.keys = m
}

// Len is how many keys the ring holds.
func (r *KEMKeyring) Len() int {
	if r == nil {
		return 0
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.keys)
}

func (r *KEMKeyring) get(id KEMKeyID) *KEMKey {
	if r == nil {
		return nil
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.keys[id]
}

// hasKEM reports whether k accepts hybrid handshakes at all.
func (k *KeyPair) hasKEM() bool { return k.KEM != nil || k.KEMKeys.Len() > 0 }

// decapsulate recovers the PSK from message 1's payload with the KEM key it
// names: one of k.KEMKeys, or k.KEM. ML-KEM rejects implicitly: an altered
// ciphertext yields an unrelated secret, so the handshake fails at message
// 2's tag rather than here.
func (k *KeyPair) decapsulate(payload []byte) ([]byte, error) {
	var p kemPayload
	if err := p.UnmarshalBinary(payload); err != nil {
		return nil, err
	}
	key := k.KEMKeys.get(p.KeyID)
	if key == nil && k.KEM != nil && k.KEM.id == p.KeyID {
		key = k.KEM
	}
	if key == nil {
		return nil, fmt.Errorf("%w: %x", ErrUnknownKEMKey, p.KeyID)
	}
	secret, err := key.dk.Decapsulate(p.Ciphertext[:])
	if err != nil {
		return nil, fmt.Errorf("KEM decapsulation: %w", err)
	}
	return secret, nil
}

// initiatorKEM decides the kind of an outbound handshake: hybrid when the
// peer has a KEM key (cfg.PeerKEM), classical otherwise unless we require
// post-quantum links.
func initiatorKEM(cfg *Config, remoteStatic [32]byte) (*kemEncap, error) {
	var pk *KEMPublicKey
	if cfg.PeerKEM != nil {
		pk = cfg.PeerKEM(remoteStatic)
	}
	if pk == nil {
		if cfg.Static.RequirePQ {
			return nil, fmt.Errorf("%w: the peer publishes no KEM key", ErrClassicalRefused)
		}
		return nil, nil
	}
	return encapsulate(pk), nil
}

// countHandshake counts a completed handshake by kind.
func (s *Stats) countHandshake(hybrid bool) {
	if hybrid {
		s.HandshakesHybrid.Add(1)
	} else {
		s.HandshakesClassical.Add(1)
	}
}

// logHandshakeFailure logs a failed inbound handshake: a refused classical
// initiator at Warn, in one line an operator can act on (the peer runs an
// old version or does not know our KEM key), anything else at Debug since
// any stranger can make a handshake fail.
func logHandshakeFailure(cfg *Config, nc net.Conn, err error) {
	if errors.Is(err, ErrClassicalRefused) {
		cfg.Stats.RefusedClassical.Add(1)
		cfg.Logger.Warn("link refused a classical (non post-quantum) handshake: this node requires post-quantum links; the peer must upgrade", "remote", nc.RemoteAddr().String())
		return
	}
	cfg.Logger.Debug("link handshake failed", "remote", nc.RemoteAddr().String(), "err", err)
}
