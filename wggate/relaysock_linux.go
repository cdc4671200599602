package wggate

import (
	"errors"
	"log/slog"
	"net"
	"unsafe"

	"golang.org/x/sys/unix"
)

// setSocketBuffers sizes c's buffers to size, past
// net.core.{r,w}mem_max when the process may (CAP_NET_ADMIN, as the node
// has for its TUN), as wireguard-go does for its sockets.
func setSocketBuffers(c *net.UDPConn, size int, log *slog.Logger) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		for _, o := range [...]struct{ force, plain int }{
			{unix.SO_RCVBUFFORCE, unix.SO_RCVBUF},
			{unix.SO_SNDBUFFORCE, unix.SO_SNDBUF},
		} {
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o.force, size) == nil {
				continue
			}
			if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o.plain, size); err != nil {
				log.Debug("wireguard socket buffer", "err", err)
			}
		}
	})
}

// udpOffload turns on UDP GRO on c (the kernel then hands over a burst of
// one sender's equal-size datagrams as one read, with their size in a
// control message) and reports it, and whether the kernel takes UDP GSO
// sends (UDP_SEGMENT, Linux ≥ 4.18). wireguard-go's bind does the same
// for its own sockets; the relay's cost is per syscall and per skb
// through the entry's stack, not per byte.
func udpOffload(c *net.UDPConn) (gso, gro bool) {
	rc, err := c.SyscallConn()
	if err != nil {
		return false, false
	}
	rc.Control(func(fd uintptr) {
		_, err := unix.GetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT)
		gso = err == nil
		gro = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_GRO, 1) == nil
	})
	return gso, gro
}

// gsoOOBSize is the control buffer one message needs for UDP_SEGMENT
// (sending) or UDP_GRO (receiving: the kernel writes an int).
var gsoOOBSize = unix.CmsgSpace(4)

// putGSO writes a UDP_SEGMENT control message for segments of size bytes
// into oob (gsoOOBSize bytes) and returns it.
func putGSO(oob []byte, size int) []byte {
	oob = oob[:unix.CmsgSpace(2)]
	clear(oob)
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level, h.Type = unix.SOL_UDP, unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	*(*uint16)(unsafe.Pointer(&oob[unix.CmsgLen(0)])) = uint16(size)
	return oob
}

// groSize is the segment size of a coalesced read from its control
// messages, or 0 if it was one datagram.
func groSize(oob []byte) int {
	cmsgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return 0
	}
	for _, c := range cmsgs {
		if c.Header.Level != unix.SOL_UDP || c.Header.Type != unix.UDP_GRO {
			continue
		}
		switch {
		case len(c.Data) >= 4:
			return int(*(*int32)(unsafe.Pointer(&c.Data[0])))
		case len(c.Data) >= 2:
			return int(*(*uint16)(unsafe.Pointer(&c.Data[0])))
		}
	}
	return 0
}

// gsoRefused tells whether a UDP_SEGMENT send failed because the path
// cannot segment (no checksum offload on the way out: EIO), so the flow
// should stop asking.
func gsoRefused(err error) bool { return errors.Is(err, unix.EIO) }
