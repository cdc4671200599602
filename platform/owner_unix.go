//go:build unix

package platform

import (
	"io/fs"
	"syscall"
)

// fileOwner is the user and group owning a file, so a restored file gets
// them back.
func fileOwner(fi fs.FileInfo) (uid, gid int) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid), int(st.Gid)
	}
	return -1, -1
}

// openNoFollow makes opening a symbolic link fail: a state file is never one.
const openNoFollow = syscall.O_NOFOLLOW
