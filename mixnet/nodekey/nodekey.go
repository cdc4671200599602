// Package nodekey keeps a node's keys in its data directory: the long-term
// ed25519 identity (its address in the network) and X25519 Noise key of its
// links, and, per key rotation, one X25519 Sphinx key and one ML-KEM-768 key
// of its post-quantum (hybrid) links.
//
// Rotation keys are random per rotation and deleted once their rotation is
// over (Prune), not derived from a master secret: whoever seizes a node later
// cannot unwrap the packets it carried before, nor open the hybrid links
// made with a deleted KEM key even if they can break X25519. That is forward
// secrecy at rotation granularity.
package nodekey

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/nym-go/nym/internal/keyfile"
	"github.com/nym-go/nym/mixnet/link"
	"github.com/nym-go/nym/mixnet/sphinx"
)

// File names inside the data directory.
const (
	identityFile = "identity.key"
	noiseFile    = "noise.key"
	sphinxPrefix = "sphinx-"
	kemPrefix    = "kem-"
	keySuffix    = ".key"
	// legacyKEMFile held the single KEM key of versions before KEM keys
	// rotated; Load deletes it.
	legacyKEMFile = "kem.key"
)

// ErrNoKeys means the directory has no identity yet (run init first).
var ErrNoKeys = errors.New("nodekey: no keys in data directory")

// Keys are a node's long-term keys.
type Keys struct {
	dir      string
	Identity ed25519.PrivateKey
	Noise    *ecdh.PrivateKey
}

// IdentityKey is the node's public identity, its routing address.
func (k *Keys) IdentityKey() [32]byte {
	var id [32]byte
	copy(id[:], k.Identity.Public().(ed25519.PublicKey))
	return id
}

// NoiseKey is the public half of the Noise static key.
func (k *Keys) NoiseKey() [32]byte {
	var pub [32]byte
	copy(pub[:], k.Noise.PublicKey().Bytes())
	return pub
}

// Create makes new identity and Noise keys in dir, refusing to overwrite any.
func Create(dir string) (*Keys, error) {
	seed := make([]byte, ed25519.SeedSize)
	rand.Read(seed)
	noise := make([]byte, 32)
	rand.Read(noise)
	for name, b := range map[string][]byte{identityFile: seed, noiseFile: noise} {
		if err := writeNew(filepath.Join(dir, name), b); err != nil {
			return nil, err
		}
	}
	return Load(dir)
}

// Load reads the keys in dir. It refuses key files that others can read.
func Load(dir string) (*Keys, error) {
	seed, err := readKey(filepath.Join(dir, identityFile), ed25519.SeedSize)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w %s", ErrNoKeys, dir)
	}
	if err != nil {
		return nil, err
	}
	nb, err := readKey(filepath.Join(dir, noiseFile), 32)
	if err != nil {
		return nil, err
	}
	noise, err := ecdh.X25519().NewPrivateKey(nb)
	if err != nil {
		return nil, fmt.Errorf("nodekey: noise key: %w", err)
	}
	// A KEM key that outlived every rotation would undo the forward
	// secrecy the rotating keys give.
	if err := os.Remove(filepath.Join(dir, legacyKEMFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("nodekey: remove the old long-lived KEM key: %w", err)
	}
	return &Keys{dir: dir, Identity: ed25519.NewKeyFromSeed(seed), Noise: noise}, nil
}

// LoadOrCreate loads the keys in dir, creating them on first use.
func LoadOrCreate(dir string) (*Keys, error) {
	k, err := Load(dir)
	if errors.Is(err, ErrNoKeys) {
		return Create(dir)
	}
	return k, err
}

// Sphinx returns the Sphinx key for a rotation, creating it if needed.
func (k *Keys) Sphinx(rotation uint64) (*sphinx.PrivateKey, error) {
	b, err := k.rotationKey(sphinxPrefix, rotation, 32, func() ([]byte, error) { return sphinx.GenerateKey().Bytes(), nil })
	if err != nil {
		return nil, err
	}
	return sphinx.NewPrivateKey(b)
}

// KEM returns the ML-KEM-768 link key for a rotation, creating it if
// needed. It lives exactly as long as the rotation's Sphinx key.
func (k *Keys) KEM(rotation uint64) (*link.KEMKey, error) {
	b, err := k.rotationKey(kemPrefix, rotation, link.KEMSeedSize, func() ([]byte, error) {
		kk, err := link.GenerateKEMKey()
		if err != nil {
			return nil, err
		}
		return kk.Seed(), nil
	})
	if err != nil {
		return nil, err
	}
	return link.NewKEMKey(b)
}

// rotationKey reads the size-byte key of one rotation from its file,
// prefix<rotation>.key, first writing one from generate if there is none.
func (k *Keys) rotationKey(prefix string, rotation uint64, size int, generate func() ([]byte, error)) ([]byte, error) {
	path := filepath.Join(k.dir, prefix+strconv.FormatUint(rotation, 10)+keySuffix)
	b, err := readKey(path, size)
	if !errors.Is(err, fs.ErrNotExist) {
		return b, err
	}
	if b, err = generate(); err != nil {
		return nil, fmt.Errorf("nodekey: generate %s: %w", path, err)
	}
	if err := writeNew(path, b); err != nil {
		if errors.Is(err, fs.ErrExist) { // another caller made it first
			return readKey(path, size)
		}
		return nil, err
	}
	return b, nil
}

// Prune deletes the Sphinx and KEM keys of rotations before oldest.
func (k *Keys) Prune(oldest uint64) error {
	entries, err := os.ReadDir(k.dir)
	if err != nil {
		return fmt.Errorf("nodekey: prune: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		for _, prefix := range []string{sphinxPrefix, kemPrefix} {
			if !strings.HasPrefix(name, prefix) || !strings.HasSuffix(name, keySuffix) {
				continue
			}
			r, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(name, prefix), keySuffix), 10, 64)
			if err != nil || r >= oldest {
				continue
			}
			if err := os.Remove(filepath.Join(k.dir, name)); err != nil {
				return fmt.Errorf("nodekey: prune: %w", err)
			}
		}
	}
	return nil
}

// Key files hold one line of base64url text: readable by an operator who
// needs to, but never by anyone else (keyfile's mode 0600). writeNew never
// replaces a key; a caller that lost a race to create one gets an error
// wrapping fs.ErrExist.
func writeNew(path string, key []byte) error {
	if err := keyfile.Create(path, []byte(base64.RawURLEncoding.EncodeToString(key)+"\n")); err != nil {
		return fmt.Errorf("nodekey: %w", err)
	}
	return nil
}

func readKey(path string, size int) ([]byte, error) {
	text, err := keyfile.Read(path)
	if err != nil {
		return nil, fmt.Errorf("nodekey: %w", err)
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimSpace(string(text)))
	if err != nil || len(b) != size {
		return nil, fmt.Errorf("nodekey: %s does not hold a %d-byte key", path, size)
	}
	return b, nil
}
