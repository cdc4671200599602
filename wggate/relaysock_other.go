//go:build !linux

package wggate

import (
	"log/slog"
	"net"
)

// setSocketBuffers sizes c's buffers to size, as far as the system
// allows.
func setSocketBuffers(c *net.UDPConn, size int, log *slog.Logger) {
	if err := c.SetReadBuffer(size); err != nil {
		log.Debug("wireguard socket buffer", "err", err)
	}
	c.SetWriteBuffer(size)
}

// udpOffload: UDP GSO and GRO are Linux's.
func udpOffload(*net.UDPConn) (gso, gro bool) { return false, false }

const gsoOOBSize = 0

func putGSO(oob []byte, _ int) []byte { return oob[:0] }
func groSize([]byte) int              { return 0 }
func gsoRefused(error) bool           { return false }
