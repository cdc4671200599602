package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"syscall"

	"github.com/nym-go/nym/platform"
)

// runExcluded joins the exclusion group, drops to the sudo user and execs
// args.
func runExcluded(args []string) error {
	if os.Geteuid() != 0 {
		return errors.New("exclude: only root may run a program outside the tunnel: sudo nymvpn exclude -- COMMAND")
	}
	path, err := exec.LookPath(args[0])
	if err != nil {
		return fmt.Errorf("exclude: %w", err)
	}
	env, err := dropToSudoUser()
	if err != nil {
		return fmt.Errorf("exclude: %w", err)
	}
	// Join last: an error above leaves nothing in the group.
	if err := platform.JoinExcludeGroup(); err != nil {
		return fmt.Errorf("exclude: %w", err)
	}
	if env != nil {
		if err := env(); err != nil {
			return fmt.Errorf("exclude: %w", err)
		}
	}
	return fmt.Errorf("exclude: %w", syscall.Exec(path, args, os.Environ()))
}

// dropToSudoUser returns what switches this process to the user who ran
// sudo (nil when not run by sudo, or by root): the group list of that user,
// then the group, then the user, and the user's HOME, USER and LOGNAME.
func dropToSudoUser() (func() error, error) {
	uidText, gidText := os.Getenv("SUDO_UID"), os.Getenv("SUDO_GID")
	if uidText == "" || uidText == "0" {
		return nil, nil
	}
	uid, err := strconv.Atoi(uidText)
	if err != nil {
		return nil, fmt.Errorf("SUDO_UID %q: %w", uidText, err)
	}
	gid, err := strconv.Atoi(gidText)
	if err != nil {
		return nil, fmt.Errorf("SUDO_GID %q: %w", gidText, err)
	}
	groups := []int{gid}
	u, err := user.LookupId(uidText)
	if err == nil {
		ids, _ := u.GroupIds()
		for _, s := range ids {
			if g, err := strconv.Atoi(s); err == nil && g != gid {
				groups = append(groups, g)
			}
		}
	}
	return func() error {
		// Go applies these to every thread of the process.
		if err := syscall.Setgroups(groups); err != nil {
			return fmt.Errorf("setgroups: %w", err)
		}
		if err := syscall.Setgid(gid); err != nil {
			return fmt.Errorf("setgid %d: %w", gid, err)
		}
		if err := syscall.Setuid(uid); err != nil {
			return fmt.Errorf("setuid %d: %w", uid, err)
		}
		if u != nil {
			os.Setenv("HOME", u.HomeDir)
			os.Setenv("USER", u.Username)
			os.Setenv("LOGNAME", u.Username)
		}
		return nil
	}, nil
}

// excludedPrograms is the status's list of the excluded programs.
func excludedPrograms() []string {
	p, err := platform.ExcludedPrograms()
	if err != nil {
		slog.Warn("split tunnel: listing the excluded programs", "err", err)
	}
	return p
}

// splitLocked makes the exclusion group while the tunnel is routed. A host
// where it cannot be made (no cgroup v2, an old kernel) still gets its
// tunnel; `nymvpn exclude` then says there is nothing to exclude from.
func (h *linuxHost) splitLocked() {
	s, err := platform.ApplySplit(platform.SplitConfig{StatePath: h.statePath, Mark: fwMark})
	if err != nil {
		slog.Warn("split tunnel unavailable", "err", err)
		return
	}
	h.split = s // the caller updates the kill switch
}

// unsplitLocked closes the kill switch to the group first, then removes it.
func (h *linuxHost) unsplitLocked() error {
	s := h.split
	if s == nil {
		return nil
	}
	h.split = nil
	return errors.Join(h.updateLocked(), s.Remove())
}
