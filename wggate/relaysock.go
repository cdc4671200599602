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
// in bursts faster than the flow's reader drains them when the CPU is busy.
// With 256 KiB and the exit's UDP GSO, a full buffer drops a whole burst
// (up to 64 datagrams) at a time: 223-384 bursts, 8899-13948 TCP
// retransmissions in a 10 s download at load 13-19; with 1 MiB, 0-10
// bursts and 0-1091, RTT under the download ~2 ms. (Without GSO and GRO,
// 1 MiB queued up to 1.6 MB, 40 ms at 400 Mbit/s.) Not wireguard-go's
// 7 MiB: a full buffer is queueing delay for every flow of the client.
const relaySocketBuffer = 1 << 20
