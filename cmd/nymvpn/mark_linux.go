package main

import "syscall"

// setMark sets SO_MARK on a socket before it connects.
func setMark(c syscall.RawConn, mark int) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_MARK, mark)
	}); err != nil {
		return err
	}
	return serr
}
