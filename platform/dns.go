package platform

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
)

// DefaultResolvConf is the resolver configuration file of the host. Inside
// `ip netns exec NAME`, /etc/netns/NAME/resolv.conf is bind-mounted over it;
// give that path instead to change a namespace's resolver from outside.
const DefaultResolvConf = "/etc/resolv.conf"

// DNSConfig says which resolvers the host should use while connected.
type DNSConfig struct {
	// StatePath is the state file that records the original configuration
	// before it is replaced.
	StatePath string
	// ResolvConf is the file to replace; empty means DefaultResolvConf.
	ResolvConf string
	// Servers are reached through the tunnel. The C library reads only the
	// first three.
	Servers []netip.Addr
	// Link is the tunnel's interface. When systemd-resolved manages DNS
	// (the resolver file names only its stub and it is on the system
	// bus), the servers are set on this link in resolved, with the
	// routing domain "~." so that every name goes to them, instead of
	// replacing the file. Empty: always the file.
	Link string
}

// DNS is the host's resolver pointed at the VPN's servers. Restore puts the
// previous configuration back.
type DNS struct {
	statePath string
	path      string     // the resolver file replaced, or
	resolved  *dnsRecord // the link set in resolved

	mu   sync.Mutex
	done bool
}

// dnsRecord is the resolver configuration as it was before we replaced it,
// and what we wrote, so that Restore can tell whether the file is still ours.
type dnsRecord struct {
	Path    string      `json:"path"`
	Kind    string      `json:"kind"` // dnsFile, dnsSymlink or dnsAbsent
	Content []byte      `json:"content,omitempty"`
	Mode    fs.FileMode `json:"mode,omitempty"`
	UID     int         `json:"uid"`
	GID     int         `json:"gid"`
	Target  string      `json:"target,omitempty"` // of the symbolic link
	Ours    []byte      `json:"ours"`
	// Link and Index name the link set in systemd-resolved (kind
	// dnsResolved; Path is empty then).
	Link  string `json:"link,omitempty"`
	Index int    `json:"index,omitempty"`
}

const (
	dnsFile    = "file"
	dnsSymlink = "symlink"
	dnsAbsent  = "absent"
	// dnsResolved: the tunnel's link configured in systemd-resolved;
	// undone by reverting the link.
	dnsResolved = "resolved"
)

// ApplyDNS points the host's resolver at cfg.Servers: through
// systemd-resolved when it manages DNS and cfg names the link (see
// DNSConfig.Link), else by replacing the resolver file. A symbolic link
// (such as resolved's stub when resolved is not reachable) is replaced by a
// file, never written through. What is changed is recorded in the state
// file first.
func ApplyDNS(cfg DNSConfig) (*DNS, error) {
	if cfg.StatePath == "" {
		return nil, errors.New("dns: no state file path")
	}
	if len(cfg.Servers) == 0 {
		return nil, errors.New("dns: no servers")
	}
	for _, s := range cfg.Servers {
		if !s.IsValid() {
			return nil, errors.New("dns: invalid server address")
		}
	}
	path := cfg.ResolvConf
	if path == "" {
		path = DefaultResolvConf
	}
	path, err := filepath.Abs(path) // the state file outlives our working directory
	if err != nil {
		return nil, fmt.Errorf("dns: %w", err)
	}
	if err := checkResolvConfPath(path); err != nil {
		return nil, fmt.Errorf("dns: %w", err)
	}
	if cfg.Link != "" && resolvedManages(path) {
		d, err := applyResolved(cfg)
		if err == nil {
			return d, nil
		}
		// resolved would not take it (refused, or gone meanwhile):
		// the file, which every program reads without resolved,
		// still keeps queries off the uplink.
	}
	ours := renderResolvConf(cfg.Servers)

	var rec dnsRecord
	err = updateState(cfg.StatePath, func(st *hostState) error {
		for i := range st.DNS {
			if st.DNS[i].Kind != dnsResolved && st.DNS[i].Path == path {
				// Left by a crashed run: the file now holds what that
				// run wrote, and the record holds the real original.
				st.DNS[i].Ours = ours
				rec = st.DNS[i]
				return nil
			}
		}
		snap, err := snapshotResolvConf(path)
		if err != nil {
			return err
		}
		snap.Ours = ours
		rec = snap
		st.DNS = append(st.DNS, snap)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dns: %w", err)
	}
	mode, uid, gid := fs.FileMode(0o644), -1, -1 // -1: owned by us
	if rec.Kind == dnsFile {
		mode, uid, gid = rec.Mode, rec.UID, rec.GID
	}
	if err := replaceFile(path, ours, mode, uid, gid); err != nil {
		return nil, fmt.Errorf("dns: write %s: %w", path, err)
	}
	return &DNS{statePath: cfg.StatePath, path: path}, nil
}

func renderResolvConf(servers []netip.Addr) []byte {
	var b strings.Builder
	b.WriteString("# Written by nymvpn: DNS goes through the tunnel while connected.\n")
	b.WriteString("# The previous configuration comes back on disconnect.\n")
	for _, s := range servers {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	return []byte(b.String())
}

// snapshotResolvConf records path as it is now.
func snapshotResolvConf(path string) (dnsRecord, error) {
	rec := dnsRecord{Path: path}
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		rec.Kind = dnsAbsent
		return rec, nil
	case err != nil:
		return rec, err
	case fi.Mode()&fs.ModeSymlink != 0:
		rec.Kind = dnsSymlink
		rec.Target, err = os.Readlink(path)
		return rec, err
	case fi.Mode().IsRegular():
		rec.Kind = dnsFile
		rec.Mode = fi.Mode().Perm()
		rec.UID, rec.GID = fileOwner(fi)
		rec.Content, err = os.ReadFile(path)
		return rec, err
	default:
		return rec, fmt.Errorf("%s is neither a file nor a symbolic link", path)
	}
}

// Restore puts back the resolver configuration ApplyDNS replaced. It is
// idempotent.
func (d *DNS) Restore() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.done {
		return nil
	}
	err := updateState(d.statePath, func(st *hostState) error {
		for i, rec := range st.DNS {
			if d.resolved != nil && (rec.Kind != dnsResolved || rec.Link != d.resolved.Link || rec.Index != d.resolved.Index) ||
				d.resolved == nil && (rec.Kind == dnsResolved || rec.Path != d.path) {
				continue
			}
			if err := restoreDNS(rec); err != nil {
				return err
			}
			st.DNS = append(st.DNS[:i], st.DNS[i+1:]...)
			return nil
		}
		return nil // already restored, e.g. by Restore
	})
	if err != nil {
		return fmt.Errorf("dns: %w", err)
	}
	d.done = true
	return nil
}

// restoreDNS puts back the recorded original, unless someone replaced our
// file since (a network manager that got a new lease): then their file is
// newer than our original and stays.
func restoreDNS(rec dnsRecord) error {
	if rec.Kind == dnsResolved {
		return restoreResolved(rec)
	}
	fi, err := os.Lstat(rec.Path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// Ours was removed; putting the original back is still right.
	case err != nil:
		return fmt.Errorf("dns: %w", err)
	case !fi.Mode().IsRegular():
		return nil
	default:
		cur, err := os.ReadFile(rec.Path)
		if err != nil {
			return fmt.Errorf("dns: %w", err)
		}
		if !bytes.Equal(cur, rec.Ours) {
			return nil
		}
	}
	switch rec.Kind {
	case dnsAbsent:
		err = os.Remove(rec.Path)
		if errors.Is(err, fs.ErrNotExist) {
			err = nil
		} else if errors.Is(err, syscall.EBUSY) {
			// A mount point cannot go away; leave it empty as the
			// nearest thing to absent.
			err = os.WriteFile(rec.Path, nil, 0o644)
		}
	case dnsSymlink:
		err = replaceWithSymlink(rec.Path, rec.Target)
	case dnsFile:
		err = replaceFile(rec.Path, rec.Content, rec.Mode, rec.UID, rec.GID)
	default:
		err = fmt.Errorf("unknown kind %q in state file", rec.Kind)
	}
	if err != nil {
		return fmt.Errorf("dns: restore %s: %w", rec.Path, err)
	}
	return nil
}

// replaceFile writes data to path atomically (readers see the old or the
// new file, never a partial one), with the given mode and owner (uid -1
// leaves the file to the user creating it). A file that
// is a mount point (bind-mounted by `ip netns exec`, Docker and others)
// cannot be renamed over; it is rewritten in place instead.
func replaceFile(path string, data []byte, mode fs.FileMode, uid, gid int) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".nymvpn*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(mode)
	}
	if err == nil && uid != -1 && (uid != os.Getuid() || gid != os.Getgid()) {
		err = tmp.Chown(uid, gid)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	err = os.Rename(tmp.Name(), path)
	if errors.Is(err, syscall.EBUSY) {
		return writeInPlace(path, data)
	}
	return err
}

func writeInPlace(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// replaceWithSymlink makes path a symbolic link to target in one rename.
func replaceWithSymlink(path, target string) error {
	tmp := filepath.Join(filepath.Dir(path), fmt.Sprintf(".%s.nymvpn-link%d", filepath.Base(path), os.Getpid()))
	os.Remove(tmp) // a leftover of a crash
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
