//go:build !linux

package exit

// HasNetAdmin is false: the exit runs on Linux only.
func HasNetAdmin() bool { return false }
