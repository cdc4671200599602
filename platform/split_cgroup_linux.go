package platform

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// cgroupRoot is the cgroup v2 hierarchy mounted for this process alone: a
// detached mount (fsopen, fsmount) that no other process sees and that goes
// away with its descriptor. Why not the mount under /sys/fs/cgroup: it is
// not at the same place on every host (/sys/fs/cgroup/unified on a hybrid
// one), and where the daemon runs under `ip netns exec`, which mounts a
// fresh /sys, it is not there at all. Needs CAP_SYS_ADMIN.
//
// The daemon must run in the initial cgroup namespace: nftables counts a
// group's level from the hierarchy's real root, and a mount made in another
// cgroup namespace starts lower.
type cgroupRoot struct{ fd int }

func openCgroupRoot() (*cgroupRoot, error) {
	fs, err := unix.Fsopen("cgroup2", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("open the cgroup v2 hierarchy: %w", err)
	}
	defer unix.Close(fs)
	if err := unix.FsconfigCreate(fs); err != nil {
		return nil, fmt.Errorf("open the cgroup v2 hierarchy: %w", err)
	}
	fd, err := unix.Fsmount(fs, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOEXEC)
	if err != nil {
		return nil, fmt.Errorf("open the cgroup v2 hierarchy: %w", err)
	}
	return &cgroupRoot{fd: fd}, nil
}

func (r *cgroupRoot) Close() error { return unix.Close(r.fd) }

// makeGroup makes the group (or takes over one a crashed run left, which it
// first makes root's alone again) and returns how nftables names it.
func (r *cgroupRoot) makeGroup(name string) (Exclude, error) {
	if err := unix.Mkdirat(r.fd, name, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
		return Exclude{}, fmt.Errorf("make the exclusion group: %w", err)
	}
	if err := unix.Fchownat(r.fd, name, 0, 0, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return Exclude{}, fmt.Errorf("exclusion group: %w", err)
	}
	if err := unix.Fchmodat(r.fd, name, 0o755, 0); err != nil {
		return Exclude{}, fmt.Errorf("exclusion group: %w", err)
	}
	st, err := r.stat(name)
	if err != nil {
		return Exclude{}, err
	}
	// A cgroup's id is its directory's inode number; it sits one level
	// below the root.
	return Exclude{CgroupID: st.Ino, Level: 1}, nil
}

func (r *cgroupRoot) stat(name string) (*unix.Stat_t, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(r.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return nil, fmt.Errorf("exclusion group: %w", err)
	}
	return &st, nil
}

// writeProcs moves process pid into the group at dir ("." for the root).
func (r *cgroupRoot) writeProcs(dir string, pid int) error {
	fd, err := unix.Openat(r.fd, dir+"/cgroup.procs", unix.O_WRONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), "cgroup.procs")
	defer f.Close()
	_, err = f.WriteString(strconv.Itoa(pid))
	return err
}

// pids lists the processes in the group.
func (r *cgroupRoot) pids(name string) ([]int, error) {
	fd, err := unix.Openat(r.fd, name+"/cgroup.procs", unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "cgroup.procs")
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("exclusion group: %w", err)
	}
	var pids []int
	for _, s := range strings.Fields(string(data)) {
		if pid, err := strconv.Atoi(s); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// removeGroup moves the group's processes to the root and removes it. A
// program may fork while it is moved; the loop moves the children too.
func (r *cgroupRoot) removeGroup(name string) error {
	for range 100 {
		err := unix.Unlinkat(r.fd, name, unix.AT_REMOVEDIR)
		if err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("remove the exclusion group: %w", err)
		}
		pids, err := r.pids(name)
		if err != nil {
			return fmt.Errorf("exclusion group: %w", err)
		}
		for _, pid := range pids {
			// ESRCH: it exited meanwhile.
			if err := r.writeProcs(".", pid); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("move %d out of the exclusion group: %w", pid, err)
			}
		}
		if len(pids) == 0 {
			// An exiting process holds it for a moment.
			time.Sleep(10 * time.Millisecond)
		}
	}
	return fmt.Errorf("remove the exclusion group %s: still busy", name)
}

// withCgroupRoot runs fn with the hierarchy opened.
func withCgroupRoot(fn func(*cgroupRoot) error) error {
	r, err := openCgroupRoot()
	if err != nil {
		return err
	}
	defer r.Close()
	return fn(r)
}
