// Package keyfile reads and writes private files, above all secret keys:
// written atomically with mode 0600 (Create makes missing parent directories
// 0700), and refused on load when group or others may access them.
//
// Symbolic links: Read follows them and judges the file it opened (fstat on
// the open descriptor, so nothing can swap the file between the check and
// the read). Deployments link keys into place (Kubernetes secret volumes,
// configuration managers); the mode check protects the key wherever it lives,
// and whoever can plant a link in a 0700 key directory could replace the key
// anyway. Writes never follow a link: Create refuses an existing name (a
// link included) and Replace renames a new file over the name, so a planted
// link cannot redirect a key onto another file.
package keyfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Mode is the permission of every file written here.
const Mode fs.FileMode = 0o600

// DirMode is the permission of the parent directories made here.
const DirMode fs.FileMode = 0o700

// MaxSize bounds what Read reads: keys are small.
const MaxSize = 64 << 10

// TempInfix follows a file's name in the name of the temporary file it is
// written to, then a random string. A crash can leave such a file behind; it
// can be deleted.
const TempInfix = ".tmp-"

// ErrExposed means a key file's mode lets group or others access it.
var ErrExposed = errors.New("key file is accessible to group or others")

// Read returns the contents of the private file at path. It refuses a file
// that group or others may access (naming its mode and the fix), one that
// is not a regular file, and one larger than MaxSize.
func Read(path string) ([]byte, error) { return ReadLimit(path, MaxSize) }

// ReadLimit is Read for private files that may be larger than a key (a
// ticketbook): it refuses one larger than limit bytes.
func ReadLimit(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err // *fs.PathError: names the file; wraps fs.ErrNotExist
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (mode %v)", path, fi.Mode())
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %#o; it must be readable by its owner only: run `chmod 600 %s`", ErrExposed, path, perm, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes: not a key file", path, limit)
	}
	return data, nil
}

// Create writes data to a new file at path (mode 0600), making missing
// parent directories (0700). The file appears whole or not at all, and never
// replaces an existing one: when path exists, Create fails with an error
// wrapping fs.ErrExist, so of two processes creating a key at once one wins
// and the other can read the winner's key.
func Create(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), DirMode); err != nil {
		return err
	}
	return write(path, func(f *os.File) error {
		_, err := f.Write(data)
		return err
	}, func(tmp string) error {
		err := os.Link(tmp, path)
		if errors.Is(err, fs.ErrExist) {
			// Name the key, not the temporary file.
			return &fs.PathError{Op: "create", Path: path, Err: fs.ErrExist}
		}
		return err
	})
}

// Replace atomically replaces the file at path (or creates it, mode 0600)
// with what fill writes to the temporary file it is given: a crash at any
// moment leaves the old file or the new one, never part of one. Unlike
// Create it makes no directories: a state file's directory is set up by its
// owner, and a missing one (an unmounted volume, a typo) is worth an error.
func Replace(path string, fill func(f *os.File) error) error {
	return write(path, fill, func(tmp string) error { return os.Rename(tmp, path) })
}

// write fills a temporary file beside path, syncs it, puts it in place with
// place and syncs the directory, which makes the new name durable. The
// temporary file is removed on every path out.
func write(path string, fill func(*os.File) error, place func(tmp string) error) error {
	dir := filepath.Dir(path)
	// CreateTemp makes the file with mode 0600 (less what the umask takes)
	// before any byte is in it; Chmod makes it exactly 0600.
	f, err := os.CreateTemp(dir, filepath.Base(path)+TempInfix+"*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after Link the key keeps its own name; after Rename this fails harmlessly
	if err := f.Chmod(Mode); err != nil {
		f.Close()
		return err
	}
	if err := fill(f); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := place(tmp); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
