package platform

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// A state file tells a root process which files to write, with which mode
// and owner, and which sysctls to set: whoever can write it can make root
// write anything. So it is trusted only when nobody but us could have
// written it (checkStatePath), and even then every record must describe a
// change this package could have made (validate): a resolver file at an
// allowed path, a sysctl from a fixed list, our own tables.

// checkStateDir refuses a state directory that someone other than us (root)
// could write to or replace: the directory itself must be ours and writable
// by nobody else, and every directory above it ours or root's and not
// writable by others (a sticky one such as /tmp excepted: others cannot
// rename what is ours in it). saveState makes a missing directory 0700.
func checkStateDir(dir string) error {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return err
	}
	euid := os.Geteuid()
	fi, err := os.Lstat(real)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", real)
	}
	if uid, _ := fileOwner(fi); uid != euid || fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("directory %s is owned by uid %d with mode %v; it must belong to uid %d and be writable by it alone (chmod 700)",
			real, uid, fi.Mode().Perm(), euid)
	}
	for d := filepath.Dir(real); ; d = filepath.Dir(d) {
		fi, err := os.Lstat(d)
		if err != nil {
			return err
		}
		if uid, _ := fileOwner(fi); uid != euid && uid != 0 {
			return fmt.Errorf("directory %s above the state file is owned by uid %d", d, uid)
		}
		if fi.Mode().Perm()&0o022 != 0 && fi.Mode()&fs.ModeSticky == 0 {
			return fmt.Errorf("directory %s above the state file is writable by others (mode %v)", d, fi.Mode().Perm())
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// checkStateFile refuses a state file that is not a regular file of ours
// closed to others.
func checkStateFile(fi fs.FileInfo) error {
	if !fi.Mode().IsRegular() {
		return errors.New("not a regular file")
	}
	if uid, _ := fileOwner(fi); uid != os.Geteuid() || fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("owned by uid %d with mode %v; it must belong to uid %d with mode 600", uid, fi.Mode().Perm(), os.Geteuid())
	}
	return nil
}

// validate checks every record of a loaded state file.
func (s *hostState) validate() error {
	if s.Routes != nil {
		if err := s.Routes.validate(); err != nil {
			return fmt.Errorf("routes: %w", err)
		}
	}
	if s.KillSwitch != nil && s.KillSwitch.Table != KillSwitchTable {
		return fmt.Errorf("kill switch: table %q is not ours", s.KillSwitch.Table)
	}
	for _, d := range s.DNS {
		if err := d.validate(); err != nil {
			return fmt.Errorf("dns: %w", err)
		}
	}
	if s.Exit != nil {
		if err := validateExitRecord(s.Exit); err != nil {
			return fmt.Errorf("exit: %w", err)
		}
	}
	if s.Split != nil {
		if err := s.Split.validate(); err != nil {
			return fmt.Errorf("split tunnel: %w", err)
		}
	}
	return nil
}

func (r *routeRecord) validate() error {
	for _, name := range r.LinksUp {
		if !validIfname(name) {
			return fmt.Errorf("bad interface name %q", name)
		}
	}
	for _, a := range r.Addrs {
		if !a.Prefix.IsValid() || !validIfname(a.Dev) {
			return fmt.Errorf("bad address record %v on %q", a.Prefix, a.Dev)
		}
	}
	for _, e := range r.Routes {
		if !e.Dst.IsValid() || (!e.Unreachable && !validIfname(e.Dev)) || !validTable(e.Table) {
			return fmt.Errorf("bad route record %+v", e)
		}
	}
	if r.MarkTable != "" && r.MarkTable != MarkTable {
		return fmt.Errorf("table %q is not ours", r.MarkTable)
	}
	for _, s := range r.Sysctls {
		if err := checkSysctl(s); err != nil {
			return err
		}
	}
	for _, e := range r.Rules {
		if e.Priority < minRulePriority || e.Priority > maxRulePriority || !validTable(e.Table) {
			return fmt.Errorf("bad rule record %+v", e)
		}
	}
	return nil
}

// validTable: main, or one of the tables a Mark can name (not local, default
// or unspecified).
func validTable(t uint32) bool { return t == 0 || t == mainTable || (t > 0 && t < 253) || t > 255 }

// validIfname is the kernel's dev_valid_name.
func validIfname(name string) bool {
	return name != "" && len(name) < 16 && name != "." && name != ".." && !strings.ContainsAny(name, "/: \t\n\r\f\v\x00")
}

// resolvConfTestDir, when set (by this package's tests), is a directory
// under which any file may be a resolver configuration.
var resolvConfTestDir string

var netnsResolvConf = regexp.MustCompile(`^/etc/netns/[^/]+/resolv\.conf$`)

// checkResolvConfPath allows the host's resolv.conf and a namespace's
// (/etc/netns/NAME/resolv.conf, which `ip netns exec` mounts over it).
func checkResolvConfPath(path string) error {
	if !filepath.IsAbs(path) || filepath.Clean(path) != path {
		return fmt.Errorf("resolver file %q: not an absolute, clean path", path)
	}
	if path == DefaultResolvConf {
		return nil
	}
	if m := netnsResolvConf.MatchString(path); m {
		if name := filepath.Base(filepath.Dir(path)); name != "." && name != ".." {
			return nil
		}
	}
	if resolvConfTestDir != "" && strings.HasPrefix(path, resolvConfTestDir+string(filepath.Separator)) {
		return nil
	}
	return fmt.Errorf("resolver file %q: only %s or /etc/netns/NAME/resolv.conf", path, DefaultResolvConf)
}

func (r dnsRecord) validate() error {
	if err := checkResolvConfPath(r.Path); err != nil {
		return err
	}
	switch r.Kind {
	case dnsAbsent:
	case dnsSymlink:
		if r.Target == "" || strings.ContainsRune(r.Target, 0) {
			return fmt.Errorf("%s: bad symbolic link target %q", r.Path, r.Target)
		}
	case dnsFile:
		// Permission bits only: never setuid, setgid, sticky or a type.
		if r.Mode&^fs.ModePerm != 0 {
			return fmt.Errorf("%s: mode %v is more than permission bits", r.Path, r.Mode)
		}
		if r.Mode&0o111 != 0 {
			return fmt.Errorf("%s: mode %v is executable", r.Path, r.Mode)
		}
		// A resolver file belongs to root (or to us, when not root).
		if (r.UID != 0 && r.UID != os.Geteuid()) || (r.GID != 0 && r.GID != os.Getegid()) {
			return fmt.Errorf("%s: owner %d:%d is neither root nor us", r.Path, r.UID, r.GID)
		}
	default:
		return fmt.Errorf("%s: unknown kind %q", r.Path, r.Kind)
	}
	return nil
}

// srcValidMark lets the reverse path filter use the mark restored from the
// connection (see routes_mark_linux.go).
const srcValidMark = "net/ipv4/conf/all/src_valid_mark"

// The sysctls this package may change: fixed keys, and per-interface
// forwarding and router advertisement keys.
var (
	fixedSysctls = map[string]bool{
		"net/ipv4/ip_forward":          true,
		"net/ipv6/conf/all/forwarding": true,
		srcValidMark:                   true,
	}
	ifSysctl   = regexp.MustCompile(`^net/(ipv4/conf/([^/]+)/forwarding|ipv6/conf/([^/]+)/(forwarding|accept_ra))$`)
	sysctlOld  = regexp.MustCompile(`^-?[0-9]{1,3}$`)
	errSysctlK = errors.New("not a sysctl this program changes")
)

// checkSysctlKey allows the fixed keys and the per-interface templates with
// a valid interface name: nothing outside /proc/sys/net, no "..".
func checkSysctlKey(key string) error {
	if fixedSysctls[key] {
		return nil
	}
	m := ifSysctl.FindStringSubmatch(key)
	if m == nil {
		return fmt.Errorf("sysctl %q: %w", key, errSysctlK)
	}
	name := m[2] + m[3]
	if !validIfname(name) {
		return fmt.Errorf("sysctl %q: bad interface name", key)
	}
	return nil
}

func validateExitRecord(r *exitRecord) error {
	if r.Table != ExitTable {
		return fmt.Errorf("table %q is not ours", r.Table)
	}
	for _, s := range r.Sysctls {
		if err := checkSysctl(s); err != nil {
			return err
		}
	}
	return nil
}

func checkSysctl(s sysctlRecord) error {
	if err := checkSysctlKey(s.Key); err != nil {
		return err
	}
	if !sysctlOld.MatchString(s.Old) {
		return fmt.Errorf("sysctl %s: bad old value %q", s.Key, s.Old)
	}
	return nil
}
