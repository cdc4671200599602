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

// relaySocketBuffer is each relay socket's receive and send buffer (the
// kernel doubles it for its bookkeeping). A download arrives from the exit
// in bursts faster than the device's goroutines drain it when the CPU is
// busy; with the default 208 KiB and one datagram per read, 28451
// datagrams overflowed in a 10 s download. Not wireguard-go's 7 MiB: a
// full buffer is queueing delay for every flow of the client; with 1 MiB
// the queue reached 1.6 MB (40 ms at 400 Mbit/s) under one download.
const relaySocketBuffer = 256 << 10
