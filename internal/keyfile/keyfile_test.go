package keyfile

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// tempsIn lists the temporary files left in dir.
func tempsIn(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var temps []string
	for _, e := range entries {
		if strings.Contains(e.Name(), TempInfix) {
			temps = append(temps, e.Name())
		}
	}
	return temps
}

func perm(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// TestCreateModes: a key file is 0600 and the directories Create makes for
// it are 0700, whatever the umask lets through.
func TestCreateModes(t *testing.T) {
	root := t.TempDir()
	path := filepath.Join(root, "a", "b", "key")
	if err := Create(path, []byte("secret\n")); err != nil {
		t.Fatal(err)
	}
	if got := perm(t, path); got != Mode {
		t.Errorf("key file mode %#o, want %#o", got, Mode)
	}
	for _, d := range []string{filepath.Join(root, "a"), filepath.Join(root, "a", "b")} {
		if got := perm(t, d); got != DirMode {
			t.Errorf("directory %s mode %#o, want %#o", d, got, DirMode)
		}
	}
	got, err := Read(path)
	if err != nil || string(got) != "secret\n" {
		t.Fatalf("Read = %q, %v", got, err)
	}
	if temps := tempsIn(t, filepath.Dir(path)); len(temps) != 0 {
		t.Fatalf("temporary files left: %v", temps)
	}
}

// TestReadRefusesExposedKey: a key file that group or others may access in
// any way is refused, naming the file and its mode; the owner-only modes
// are read.
func TestReadRefusesExposedKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "key")
	if err := Create(path, []byte("k")); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []fs.FileMode{0o640, 0o604, 0o644, 0o620, 0o602, 0o610, 0o601, 0o660} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		_, err := Read(path)
		if !errors.Is(err, ErrExposed) || !strings.Contains(err.Error(), path) ||
			!strings.Contains(err.Error(), fmt.Sprintf("%#o", mode)) || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("mode %#o: Read error %v, want ErrExposed naming %s and the mode", mode, err, path)
		}
	}
	for _, mode := range []fs.FileMode{0o600, 0o400} {
		os.Chmod(path, mode)
		if _, err := Read(path); err != nil {
			t.Errorf("mode %#o refused: %v", mode, err)
		}
	}
}

// TestReadJudgesTheLinkedFile: a link is followed and the mode of the file
// it reaches decides.
func TestReadJudgesTheLinkedFile(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	if err := Create(target, []byte("k")); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if got, err := Read(link); err != nil || string(got) != "k" {
		t.Fatalf("Read through a link to a 0600 key = %q, %v", got, err)
	}
	os.Chmod(target, 0o644)
	if _, err := Read(link); !errors.Is(err, ErrExposed) {
		t.Fatalf("Read through a link to a 0644 key: %v", err)
	}
}

func TestReadRefusesOtherFiles(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "sub")
	os.Mkdir(sub, 0o700)
	if _, err := Read(sub); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: %v", err)
	}
	big := filepath.Join(dir, "big")
	if err := Create(big, make([]byte, MaxSize+1)); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(big); err == nil || !strings.Contains(err.Error(), "larger") {
		t.Errorf("oversized file: %v", err)
	}
	if _, err := Read(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

// TestCreateNeverReplaces: an existing key, or a link in its place, is
// left alone and reported as fs.ErrExist; nothing is written through the
// link.
func TestCreateNeverReplaces(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "key")
	if err := Create(path, []byte("first")); err != nil {
		t.Fatal(err)
	}
	if err := Create(path, []byte("second")); !errors.Is(err, fs.ErrExist) || !strings.Contains(err.Error(), path) || strings.Contains(err.Error(), TempInfix) {
		t.Fatalf("second Create: %v, want fs.ErrExist naming %s", err, path)
	}
	if got, _ := Read(path); string(got) != "first" {
		t.Fatalf("key became %q", got)
	}
	elsewhere := filepath.Join(dir, "elsewhere")
	dangling := filepath.Join(dir, "dangling")
	os.Symlink(elsewhere, dangling)
	if err := Create(dangling, []byte("k")); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("Create over a dangling link: %v, want fs.ErrExist", err)
	}
	if _, err := os.Lstat(elsewhere); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Create wrote through the link: %v", err)
	}
	if temps := tempsIn(t, dir); len(temps) != 0 {
		t.Fatalf("temporary files left: %v", temps)
	}
}

// TestCreateRace: of many processes' worth of concurrent Creates, exactly
// one wins and the file holds its bytes whole.
func TestCreateRace(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "key")
	const n = 16
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = Create(path, bytes.Repeat([]byte{byte('a' + i)}, 4096)) })
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("creates %d and %d both won", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, fs.ErrExist):
			t.Fatalf("create %d: %v", i, err)
		}
	}
	got, err := Read(path)
	if err != nil || winner < 0 || !bytes.Equal(got, bytes.Repeat([]byte{byte('a' + winner)}, 4096)) {
		t.Fatalf("winner %d, file %.8q… (%d bytes), %v", winner, got, len(got), err)
	}
	if temps := tempsIn(t, dir); len(temps) != 0 {
		t.Fatalf("temporary files left: %v", temps)
	}
}

// TestReplaceIsAtomic: a write that fails halfway leaves the old file as it
// was (or no file, when there was none) and no temporary file; one that
// succeeds replaces it whole, mode 0600.
func TestReplaceIsAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state")
	broken := errors.New("disk full")
	half := func(f *os.File) error {
		f.Write([]byte("half of a new"))
		return broken
	}
	if err := Replace(path, half); !errors.Is(err, broken) {
		t.Fatalf("failed Replace of a new file: %v", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a failed write left a file: %v", err)
	}
	if err := Replace(path, func(f *os.File) error { _, err := f.Write([]byte("old")); return err }); err != nil {
		t.Fatal(err)
	}
	if err := Replace(path, half); !errors.Is(err, broken) {
		t.Fatalf("failed Replace: %v", err)
	}
	if got, _ := Read(path); string(got) != "old" {
		t.Fatalf("a failed write changed the file to %q", got)
	}
	if temps := tempsIn(t, dir); len(temps) != 0 {
		t.Fatalf("temporary files left: %v", temps)
	}
	os.Chmod(path, 0o644)
	if err := Replace(path, func(f *os.File) error { _, err := f.Write([]byte("new")); return err }); err != nil {
		t.Fatal(err)
	}
	if got, _ := Read(path); string(got) != "new" || perm(t, path) != Mode {
		t.Fatalf("after Replace: %q mode %#o", got, perm(t, path))
	}
}

// TestReplaceDoesNotWriteThroughLinks: Replace puts a file in the link's
// place and leaves the file the link pointed at untouched.
func TestReplaceDoesNotWriteThroughLinks(t *testing.T) {
	dir := t.TempDir()
	other := filepath.Join(dir, "other")
	os.WriteFile(other, []byte("not yours"), 0o644)
	path := filepath.Join(dir, "state")
	os.Symlink(other, path)
	if err := Replace(path, func(f *os.File) error { _, err := f.Write([]byte("mine")); return err }); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(other); string(b) != "not yours" {
		t.Fatalf("Replace wrote through the link: %q", b)
	}
	fi, err := os.Lstat(path)
	if err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("path after Replace: %v %v", fi, err)
	}
}

func TestReplaceNeedsTheDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "state")
	if err := Replace(path, func(*os.File) error { return nil }); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Replace into a missing directory: %v", err)
	}
}
