package client

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"

	"github.com/nym-go/nym/internal/keyfile"
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
	data, err := keyfile.Read(path)
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

// writeIdentity writes the key whole or not at all, and returns the key that
// is at path afterwards: of two processes creating the key at once, the
// loser reads the winner's key.
func writeIdentity(path string, kp link.KeyPair) (link.KeyPair, error) {
	line := addressEncoding.EncodeToString(kp.Private[:]) + "\n"
	if err := keyfile.Create(path, []byte(line)); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return LoadIdentity(path)
		}
		return link.KeyPair{}, fmt.Errorf("identity: %w", err)
	}
	return kp, nil
}
