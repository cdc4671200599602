package client

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/nym-go/nym/mixnet/link"
)

// LoadOrCreateIdentity reads the client identity key kept at path, creating
// a fresh one (file mode 0600, parent directories 0700) when none exists.
// The file holds the private key in unpadded base64url on one line.
//
// A key file that group or others may read is refused: whoever holds the key
// can receive this client's messages.
func LoadOrCreateIdentity(path string) (link.KeyPair, error) {
	kp, err := LoadIdentity(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return kp, err
	}
	kp, err = link.GenerateKeyPair(nil)
	if err != nil {
		return link.KeyPair{}, fmt.Errorf("identity: %w", err)
	}
	return writeIdentity(path, kp)
}

// LoadIdentity reads an identity key written by LoadOrCreateIdentity.
func LoadIdentity(path string) (link.KeyPair, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return link.KeyPair{}, fmt.Errorf("identity: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return link.KeyPair{}, fmt.Errorf("identity: %s has mode %v; it must not be readable by group or others (chmod 600)", path, fi.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return link.KeyPair{}, fmt.Errorf("identity: %w", err)
	}
	data = bytes.TrimSpace(data)
	var priv [32]byte
	if len(data) != encodedKeyLen {
		return link.KeyPair{}, fmt.Errorf("identity: %s: want %d base64url characters, found %d", path, encodedKeyLen, len(data))
	}
	if n, err := addressEncoding.Decode(priv[:], data); err != nil || n != 32 {
		return link.KeyPair{}, fmt.Errorf("identity: %s: not base64url: %v", path, err)
	}
	kp, err := link.KeyPairFromPrivate(priv)
	if err != nil {
		return link.KeyPair{}, fmt.Errorf("identity: %s: %w", path, err)
	}
	return kp, nil
}

// writeIdentity writes the key to a temporary file and links it into place,
// so a crash never leaves a half-written key behind, and returns the key that
// is at path afterwards.
func writeIdentity(path string, kp link.KeyPair) (link.KeyPair, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return link.KeyPair{}, fmt.Errorf("identity: %w", err)
	}
	f, err := os.CreateTemp(dir, ".identity-*")
	if err != nil {
		return link.KeyPair{}, fmt.Errorf("identity: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return link.KeyPair{}, fmt.Errorf("identity: %w", err)
	}
	line := addressEncoding.EncodeToString(kp.Private[:]) + "\n"
	if _, err := f.WriteString(line); err != nil {
		f.Close()
		return link.KeyPair{}, fmt.Errorf("identity: writing %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return link.KeyPair{}, fmt.Errorf("identity: %w", err)
	}
	if err := f.Close(); err != nil {
		return link.KeyPair{}, fmt.Errorf("identity: %w", err)
	}
	// Link, not rename, so that two processes creating the key at once do not
	// overwrite each other: the loser reads the winner's key.
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return LoadIdentity(path)
		}
		return link.KeyPair{}, fmt.Errorf("identity: %w", err)
	}
	return kp, nil
}
