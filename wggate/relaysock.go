package wggate

import (
	"net"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// batchConn is a flow's connected socket as golang.org/x/net drives it:
// recvmmsg and sendmmsg on Linux, one datagram per call elsewhere.
// ipv4.Message and ipv6.Message are one type.
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

func newBatchConn(c *net.UDPConn, v6 bool) batchConn {
	if v6 {
		return ipv6.NewPacketConn(c)
	}
	return ipv4.NewPacketConn(c)
}

// relaySocketBuffer is each relay socket's receive and send buffer. A
// download arrives from the exit in bursts of a whole TCP window, faster
// than the device's goroutines drain it when the CPU is busy; with the
// default 208 KiB the socket overflowed and the client's TCP saw losses.
// Not wireguard-go's 7 MiB: a full buffer is queueing delay for every
// flow of the client (1 MiB is about 450 datagrams, 15 ms at 300 Mbit/s).
// The memory is only taken while datagrams wait.
const relaySocketBuffer = 1 << 20
