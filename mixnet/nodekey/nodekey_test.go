package nodekey

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestCreateLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "node")
	if _, err := Load(dir); !errors.Is(err, ErrNoKeys) {
		t.Fatalf("Load on empty dir: %v, want ErrNoKeys", err)
	}
	k, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	again, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	if k.IdentityKey() != again.IdentityKey() || k.NoiseKey() != again.NoiseKey() {
		t.Fatal("a restarted node has a new identity")
	}
	if _, err := Create(dir); err == nil {
		t.Fatal("Create overwrote existing keys")
	}
	for _, name := range []string{identityFile, noiseFile} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Fatalf("%s has mode %v, want 0600", name, st.Mode().Perm())
		}
	}
}

func TestRefusesReadableKeys(t *testing.T) {
	dir := t.TempDir()
	if _, err := Create(dir); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(dir, identityFile), 0o644)
	if _, err := Load(dir); err == nil {
		t.Fatal("loaded a world-readable identity key")
	}
}

func TestRefusesGarbage(t *testing.T) {
	dir := t.TempDir()
	if _, err := Create(dir); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, noiseFile), []byte("not a key\n"), 0o600)
	if _, err := Load(dir); err == nil {
		t.Fatal("loaded a garbage noise key")
	}
}

func TestSphinxRotation(t *testing.T) {
	k, err := Create(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a, err := k.Sphinx(7)
	if err != nil {
		t.Fatal(err)
	}
	b, err := k.Sphinx(7)
	if err != nil {
		t.Fatal(err)
	}
	if a.PublicKey() != b.PublicKey() {
		t.Fatal("the same rotation gave two keys")
	}
	c, _ := k.Sphinx(8)
	if c.PublicKey() == a.PublicKey() {
		t.Fatal("two rotations share a key")
	}
	if err := k.Prune(8); err != nil {
		t.Fatal(err)
	}
	d, _ := k.Sphinx(7)
	if d.PublicKey() == a.PublicKey() {
		t.Fatal("a pruned rotation key survived")
	}
	e, _ := k.Sphinx(8)
	if e.PublicKey() != c.PublicKey() {
		t.Fatal("pruning removed the current rotation's key")
	}
}

// TestKEMKeyRotation: the KEM key is one per rotation like the Sphinx key:
// stable across calls and restarts, mode 0600, distinct per rotation, and
// Prune deletes the file of an ended rotation, so its key is gone from disk
// (forward secrecy) while the current rotation's stays.
func TestKEMKeyRotation(t *testing.T) {
	dir := t.TempDir()
	k, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	a, err := k.KEM(7)
	if err != nil {
		t.Fatal(err)
	}
	restarted, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := restarted.KEM(7)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.PublicKey(), b.PublicKey()) {
		t.Fatal("the same rotation gave two KEM keys")
	}
	c, err := k.KEM(8)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(c.PublicKey(), a.PublicKey()) {
		t.Fatal("two rotations share a KEM key")
	}
	old := filepath.Join(dir, "kem-7.key")
	st, err := os.Stat(old)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("KEM key file has mode %v, want 0600", st.Mode().Perm())
	}
	if err := k.Prune(8); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(old); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the ended rotation's KEM key is still on disk: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "kem-8.key")); err != nil {
		t.Fatalf("pruning removed the current rotation's KEM key: %v", err)
	}
	os.Chmod(filepath.Join(dir, "kem-8.key"), 0o644)
	if _, err := k.KEM(8); err == nil {
		t.Fatal("loaded a world-readable KEM key")
	}
}

// TestLegacyKEMKeyRemoved: the single long-lived KEM key of versions before
// KEM keys rotated is deleted on load, keeping the identity.
func TestLegacyKEMKeyRemoved(t *testing.T) {
	dir := t.TempDir()
	k, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	legacy := filepath.Join(dir, legacyKEMFile)
	if err := os.WriteFile(legacy, []byte("AAAA\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	up, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if up.IdentityKey() != k.IdentityKey() {
		t.Fatal("upgrade changed the identity")
	}
	if _, err := os.Stat(legacy); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the long-lived KEM key survived the upgrade: %v", err)
	}
}
