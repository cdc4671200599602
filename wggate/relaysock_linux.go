package wggate

import (
	"log/slog"
	"net"

	"golang.org/x/sys/unix"
)

// setSocketBuffers sizes c's buffers to relaySocketBuffer, past
// net.core.{r,w}mem_max when the process may (CAP_NET_ADMIN, as the node
// has for its TUN), as wireguard-go does for its sockets.
func setSocketBuffers(c *net.UDPConn, log *slog.Logger) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		for _, o := range [...]struct{ force, plain int }{
			{unix.SO_RCVBUFFORCE, unix.SO_RCVBUF},
			{unix.SO_SNDBUFFORCE, unix.SO_SNDBUF},
		} {
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o.force, relaySocketBuffer) == nil {
				continue
			}
			if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o.plain, relaySocketBuffer); err != nil {
				log.Debug("wireguard relay: socket buffer", "err", err)
			}
		}
	})
}
