package authority

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/nym-go/nym/internal/keyfile"
)

// SigningKeyFile is the name of the directory's private key inside its data
// dir: PKCS#8 in PEM, mode 0600.
const SigningKeyFile = "directory_ed25519.pem"

// ErrNoSigningKey means the data dir has no signing key yet.
var ErrNoSigningKey = errors.New("no directory signing key")

// LoadSigningKey reads the directory's private key from dataDir. It refuses a
// key file that group or others may read: a leaked directory key lets anyone
// publish topologies every client trusts.
func LoadSigningKey(dataDir string) (ed25519.PrivateKey, error) {
	path := filepath.Join(dataDir, SigningKeyFile)
	data, err := keyfile.Read(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w in %s: create one with `nym-api init --data-dir %s` (or `nym-api run` creates it on first start)", ErrNoSigningKey, dataDir, dataDir)
	}
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	parsed, err := parsePKCS8PEM(data)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	priv, ok := parsed.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("signing key %s: %T is not an ed25519 key", path, parsed)
	}
	return priv, nil
}

// LoadOrCreateSigningKey loads the signing key from dataDir, creating the dir
// (0700) and a fresh key (0600) when there is none. created reports whether
// a key was made.
func LoadOrCreateSigningKey(dataDir string) (priv ed25519.PrivateKey, created bool, err error) {
	priv, err = LoadSigningKey(dataDir)
	if !errors.Is(err, ErrNoSigningKey) {
		return priv, false, err
	}
	_, priv, err = ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, false, fmt.Errorf("generate signing key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, false, fmt.Errorf("encode signing key: %w", err)
	}
	var buf bytes.Buffer
	if err := pem.Encode(&buf, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		return nil, false, fmt.Errorf("encode signing key: %w", err)
	}
	// Create never replaces a key: if two processes race, one fails
	// instead of both writing keys.
	if err := keyfile.Create(filepath.Join(dataDir, SigningKeyFile), buf.Bytes()); err != nil {
		return nil, false, fmt.Errorf("create signing key: %w", err)
	}
	return priv, true, nil
}

// parsePKCS8PEM decodes a private key file's PEM "PRIVATE KEY" block.
func parsePKCS8PEM(data []byte) (any, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("no PEM \"PRIVATE KEY\" block")
	}
	return x509.ParsePKCS8PrivateKey(block.Bytes)
}
