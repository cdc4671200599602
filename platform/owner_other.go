//go:build !unix

package platform

import (
	"io/fs"
	"os"
)

// fileOwner reports the current user: files have no numeric owner here, and
// replaceFile changes the owner only when it differs from the current one.
func fileOwner(fs.FileInfo) (uid, gid int) { return os.Getuid(), os.Getgid() }

// openNoFollow: no such flag here; the state file checks still apply.
const openNoFollow = 0
