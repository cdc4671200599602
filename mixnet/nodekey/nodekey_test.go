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
	if !bytes.Equal(k.KEM.PublicKey(), again.KEM.PublicKey()) {
		t.Fatal("a restarted node has a new KEM key")
	}
	if _, err := Create(dir); err == nil {
		t.Fatal("Create overwrote existing keys")
	}
	for _, name := range []string{identityFile, noiseFile, kemFile} {
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
	if err := k.PruneSphinx(8); err != nil {
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

// TestKEMKeyUpgrade: a data directory made before post-quantum links (no
// KEM key) gets one on the next load, keeps its identity, and a readable KEM
// key is refused like any other.
func TestKEMKeyUpgrade(t *testing.T) {
	dir := t.TempDir()
	k, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, kemFile)); err != nil {
		t.Fatal(err)
	}
	up, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if up.IdentityKey() != k.IdentityKey() || up.KEM == nil || bytes.Equal(up.KEM.PublicKey(), k.KEM.PublicKey()) {
		t.Fatal("upgrade did not keep the identity and make a new KEM key")
	}
	os.Chmod(filepath.Join(dir, kemFile), 0o644)
	if _, err := Load(dir); err == nil {
		t.Fatal("loaded a world-readable KEM key")
	}
}
