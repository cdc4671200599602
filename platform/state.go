package platform

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// ErrUnsupported is returned by every entry point on platforms this package
// does not support yet.
var ErrUnsupported = errors.New("platform: not supported on this platform yet")

// stateVersion is written into every state file; a file from a newer version
// is refused rather than half understood.
const stateVersion = 1

// hostState is what the state file holds: one record per kind of change,
// each with enough to undo it exactly. A nil record means nothing of that
// kind is outstanding.
type hostState struct {
	Version    int               `json:"version"`
	Routes     *routeRecord      `json:"routes,omitempty"`
	KillSwitch *killSwitchRecord `json:"kill_switch,omitempty"`
	DNS        []dnsRecord       `json:"dns,omitempty"`
	Exit       *exitRecord       `json:"exit,omitempty"`
	Split      *splitRecord      `json:"split,omitempty"`
}

func (s *hostState) empty() bool {
	return s.Routes == nil && s.KillSwitch == nil && len(s.DNS) == 0 && s.Exit == nil && s.Split == nil
}

// stateMu serialises read-modify-write cycles of state files within this
// process. One process (the daemon) owns a state file at a time.
var stateMu sync.Mutex

// loadState reads the state file; a missing file is an empty state. A file
// (or directory) that someone else could have written, or a record this
// package would never have made, is refused: see statecheck.go.
func loadState(path string) (*hostState, error) {
	if path == "" {
		return nil, errors.New("state file: no path given")
	}
	f, err := os.OpenFile(path, os.O_RDONLY|openNoFollow, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return &hostState{Version: stateVersion}, nil
	}
	if err != nil {
		if fi, lerr := os.Lstat(path); lerr == nil && fi.Mode()&fs.ModeSymlink != 0 {
			return nil, fmt.Errorf("state file %s: refused: a symbolic link", path)
		}
		return nil, fmt.Errorf("state file: %w", err)
	}
	defer f.Close()
	if err := checkStateDir(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("state file %s: refused: %w", path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("state file: %w", err)
	}
	if err := checkStateFile(fi); err != nil {
		return nil, fmt.Errorf("state file %s: refused: %w", path, err)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxStateSize+1))
	if err != nil {
		return nil, fmt.Errorf("state file: %w", err)
	}
	if len(data) > maxStateSize {
		return nil, fmt.Errorf("state file %s: refused: larger than %d bytes", path, maxStateSize)
	}
	var st hostState
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("state file %s: %w", path, err)
	}
	if st.Version > stateVersion {
		return nil, fmt.Errorf("state file %s: version %d is newer than this program understands (%d)", path, st.Version, stateVersion)
	}
	if err := st.validate(); err != nil {
		return nil, fmt.Errorf("state file %s: refused: %w", path, err)
	}
	st.Version = stateVersion
	return &st, nil
}

// maxStateSize bounds a state file: the records are small (a resolver file
// is the largest).
const maxStateSize = 1 << 20

// saveState writes the state atomically (see replaceFile) so a crash leaves
// either the old or the new record, never a torn one. An empty state removes
// the file. The directory is made root-only (0700) if missing, and refused
// if others could write to it.
func saveState(path string, st *hostState) error {
	if st.empty() {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("state file: %w", err)
		}
		return nil
	}
	if err := st.validate(); err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	if err := checkStateDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("state file %s: refused: %w", path, err)
	}
	if err := replaceFile(path, append(data, '\n'), 0o600, -1, -1); err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	return nil
}

// updateState applies fn to the state file under stateMu. The file is
// written only if fn succeeds.
func updateState(path string, fn func(*hostState) error) error {
	stateMu.Lock()
	defer stateMu.Unlock()
	st, err := loadState(path)
	if err != nil {
		return err
	}
	if err := fn(st); err != nil {
		return err
	}
	return saveState(path, st)
}

// Restore undoes every change recorded in the state file at statePath, in
// the order that opens no leak: resolver first, then routes and the exit's
// networking, the kill switch last. It acts on the calling thread's network
// namespace. What it undoes is removed from the file; the file is removed
// once nothing is left. A missing file means nothing to do, so Restore is
// safe to call at every start and after every stop.
func Restore(statePath string) error {
	return restore(statePath, false)
}

// RestoreKeepingKillSwitch is Restore but leaves the kill switch (and its
// record) in place: for a daemon that restarts after a crash while the user
// still wants to be connected, so nothing leaks while it reconnects.
func RestoreKeepingKillSwitch(statePath string) error {
	return restore(statePath, true)
}

func restore(statePath string, keepKillSwitch bool) error {
	stateMu.Lock()
	defer stateMu.Unlock()
	st, err := loadState(statePath)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	var errs []error
	var keptDNS []dnsRecord
	for _, rec := range st.DNS {
		if err := restoreDNS(rec); err != nil {
			errs = append(errs, err)
			keptDNS = append(keptDNS, rec)
		}
	}
	st.DNS = keptDNS
	if st.Split != nil {
		if err := restoreSplit(st.Split); err != nil {
			errs = append(errs, err)
		} else {
			st.Split = nil
		}
	}
	if st.Routes != nil {
		if err := restoreRoutes(st.Routes); err != nil {
			errs = append(errs, err)
		} else {
			st.Routes = nil
		}
	}
	if st.Exit != nil {
		if err := restoreExit(st.Exit); err != nil {
			errs = append(errs, err)
		} else {
			st.Exit = nil
		}
	}
	if st.KillSwitch != nil && !keepKillSwitch {
		if err := restoreKillSwitch(st.KillSwitch); err != nil {
			errs = append(errs, err)
		} else {
			st.KillSwitch = nil
		}
	}
	if err := saveState(statePath, st); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	return nil
}
