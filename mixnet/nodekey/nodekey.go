// Package nodekey keeps a node's long-term keys in its data directory: the
// ed25519 identity (its address in the network), the X25519 Noise key of its
// links with the ML-KEM-768 key of its post-quantum (hybrid) links, and one
// X25519 Sphinx key per key rotation.
//
// The KEM key lives as long as the Noise key. That gives no forward
// secrecy against a later compromise of the KEM key: whoever seizes it, and
// can also break X25519, can open the links recorded before. Rotating it
// with the Sphinx keys would close that gap (the link handshake already names
// the KEM key it uses).
//
// Sphinx keys are random per rotation and deleted once their rotation is
// over, not derived from a master secret: whoever seizes a node later cannot
// unwrap the packets it carried before.
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

	"github.com/nym-go/nym/mixnet/link"
	"github.com/nym-go/nym/mixnet/sphinx"
)

// File names inside the data directory.
const (
	identityFile = "identity.key"
	noiseFile    = "noise.key"
	kemFile      = "kem.key"
	sphinxPrefix = "sphinx-"
	sphinxSuffix = ".key"
)

// ErrNoKeys means the directory has no identity yet (run init first).
var ErrNoKeys = errors.New("nodekey: no keys in data directory")

// Keys are a node's long-term keys.
type Keys struct {
	dir      string
	Identity ed25519.PrivateKey
	Noise    *ecdh.PrivateKey
	// KEM is the ML-KEM-768 key of hybrid link handshakes.
	KEM *link.KEMKey
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
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("nodekey: create data directory: %w", err)
	}
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
	kem, err := loadKEM(filepath.Join(dir, kemFile))
	if err != nil {
		return nil, err
	}
	return &Keys{dir: dir, Identity: ed25519.NewKeyFromSeed(seed), Noise: noise, KEM: kem}, nil
}

// loadKEM reads the KEM key, creating it the first time: at init, and when
// a node made before post-quantum links starts with this version.
func loadKEM(path string) (*link.KEMKey, error) {
	b, err := readKey(path, link.KEMSeedSize)
	if errors.Is(err, fs.ErrNotExist) {
		k, err := link.GenerateKEMKey()
		if err != nil {
			return nil, err
		}
		if err := writeNew(path, k.Seed()); err != nil {
			if errors.Is(err, fs.ErrExist) { // another caller made it first
				return loadKEM(path)
			}
			return nil, err
		}
		return k, nil
	}
	if err != nil {
		return nil, err
	}
	return link.NewKEMKey(b)
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
	path := filepath.Join(k.dir, sphinxPrefix+strconv.FormatUint(rotation, 10)+sphinxSuffix)
	b, err := readKey(path, 32)
	if errors.Is(err, fs.ErrNotExist) {
		sk := sphinx.GenerateKey()
		if err := writeNew(path, sk.Bytes()); err != nil {
			if errors.Is(err, fs.ErrExist) { // another caller made it first
				return k.Sphinx(rotation)
			}
			return nil, err
		}
		return sk, nil
	}
	if err != nil {
		return nil, err
	}
	return sphinx.NewPrivateKey(b)
}

// PruneSphinx deletes the Sphinx keys of rotations before oldest.
func (k *Keys) PruneSphinx(oldest uint64) error {
	entries, err := os.ReadDir(k.dir)
	if err != nil {
		return fmt.Errorf("nodekey: prune: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, sphinxPrefix) || !strings.HasSuffix(name, sphinxSuffix) {
			continue
		}
		r, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(name, sphinxPrefix), sphinxSuffix), 10, 64)
		if err != nil || r >= oldest {
			continue
		}
		if err := os.Remove(filepath.Join(k.dir, name)); err != nil {
			return fmt.Errorf("nodekey: prune: %w", err)
		}
	}
	return nil
}

// Key files hold one line of base64url text: readable by an operator who
// needs to, but never by anyone else (mode 0600).
func writeNew(path string, key []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("nodekey: %w", err)
	}
	_, err = f.WriteString(base64.RawURLEncoding.EncodeToString(key) + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("nodekey: write %s: %w", path, err)
	}
	return nil
}

func readKey(path string, size int) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("nodekey: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("nodekey: %s is readable by others (mode %v); chmod 600 it", path, st.Mode().Perm())
	}
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("nodekey: %w", err)
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimSpace(string(text)))
	if err != nil || len(b) != size {
		return nil, fmt.Errorf("nodekey: %s does not hold a %d-byte key", path, size)
	}
	return b, nil
}
