//go:build !linux

package wggate

import (
	"log/slog"
	"net"
)

// setSocketBuffers sizes c's buffers to relaySocketBuffer, as far as the
// system allows.
func setSocketBuffers(c *net.UDPConn, log *slog.Logger) {
	if err := c.SetReadBuffer(relaySocketBuffer); err != nil {
		log.Debug("wireguard relay: socket buffer", "err", err)
	}
	c.SetWriteBuffer(relaySocketBuffer)
}
