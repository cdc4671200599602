//go:build unix

package main

import "syscall"

// detached puts the daemon in a session of its own, so it outlives the
// terminal that ran connect.
func detached() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setsid: true} }
