package platform

import (
	"os"
	"path/filepath"
	"testing"
)

// TestMain lets the tests' resolver files live in their temporary
// directories (in production only /etc/resolv.conf and
// /etc/netns/NAME/resolv.conf are allowed).
func TestMain(m *testing.M) {
	if dir, err := filepath.EvalSymlinks(os.TempDir()); err == nil {
		resolvConfTestDir = dir
	}
	os.Exit(m.Run())
}
