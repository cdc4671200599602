//go:build !linux

package main

import "syscall"

// setMark: no socket marks here (and no host integration to need them).
func setMark(syscall.RawConn, int) error { return nil }
