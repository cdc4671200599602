package wggate

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"

	"golang.org/x/net/ipv4"
	"golang.zx2c4.com/wireguard/conn"
)

// bindSocketBuffer is the door's socket's receive and send buffer: one
// socket carries every peer's traffic, so wireguard-go's size for its own
// (7 MiB), not a relay flow's.
const bindSocketBuffer = 7 << 20

// addrBind is the device's conn.Bind when the door listens on one address
// (Config.Listen not unspecified): one UDP socket bound to that address, so
// every answer leaves from the address the peer reached. wireguard-go's
// StdNetBind listens on every address and keeps the destination of each
// datagram (IP_PKTINFO) to answer from it, but with UDP GRO on (Linux ≥
// 5.12) it drops that information when it splits a read, and answers from
// the host's default source address: an exit announced at an address of
// its own was answered from another, which the entry's relay socket,
// connected to the announced address, drops.
type addrBind struct {
	addr netip.Addr
	log  *slog.Logger
	msgs sync.Pool // *[]ipv4.Message for Send

	mu sync.Mutex
	c  *net.UDPConn
}

func newAddrBind(addr netip.Addr, log *slog.Logger) *addrBind {
	b := &addrBind{addr: addr, log: log}
	b.msgs.New = func() any {
		ms := make([]ipv4.Message, conn.IdealBatchSize)
		for i := range ms {
			ms[i].Buffers = make([][]byte, 1)
		}
		return &ms
	}
	return b
}

// Open binds the socket to the address and port.
func (b *addrBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.c != nil {
		return nil, 0, conn.ErrBindAlreadyOpen
	}
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(b.addr, port)))
	if err != nil {
		return nil, 0, fmt.Errorf("wggate: WireGuard socket on %s: %w", b.addr, err)
	}
	setSocketBuffers(c, bindSocketBuffer, b.log)
	b.c = c
	bc := newBatchConn(c, b.addr.Is6() && !b.addr.Is4In6())
	// One receive function, called by one goroutine of the device: its
	// messages are its own.
	ms := make([]ipv4.Message, conn.IdealBatchSize)
	for i := range ms {
		ms[i].Buffers = make([][]byte, 1)
	}
	var last *conn.StdNetEndpoint
	recv := func(pkts [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		n := min(len(pkts), len(ms))
		for i := range n {
			ms[i].Buffers[0] = pkts[i]
		}
		n, err := bc.ReadBatch(ms[:n], 0)
		if err != nil {
			return 0, err
		}
		for i := range n {
			sizes[i] = ms[i].N
			ua, _ := ms[i].Addr.(*net.UDPAddr)
			if ua == nil {
				sizes[i] = 0
				continue
			}
			ap := ua.AddrPort()
			ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
			// A batch mostly comes from one peer: its endpoint (never
			// changed once made) serves them all, not one allocation each.
			if last == nil || last.AddrPort != ap {
				last = &conn.StdNetEndpoint{AddrPort: ap}
			}
			eps[i] = last
		}
		return n, nil
	}
	return []conn.ReceiveFunc{recv}, uint16(c.LocalAddr().(*net.UDPAddr).Port), nil
}

// Close closes the socket; the receive function then returns net.ErrClosed.
func (b *addrBind) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.c == nil {
		return nil
	}
	err := b.c.Close()
	b.c = nil
	return err
}

// SetMark: the door sets no fwmark.
func (b *addrBind) SetMark(mark uint32) error {
	if mark != 0 {
		return errors.New("wggate: fwmark not supported on an address-bound socket")
	}
	return nil
}

// Send writes bufs to ep in as few calls as the system allows.
func (b *addrBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	b.mu.Lock()
	c := b.c
	b.mu.Unlock()
	if c == nil {
		return net.ErrClosed
	}
	se, ok := ep.(*conn.StdNetEndpoint)
	if !ok {
		return fmt.Errorf("wggate: endpoint of type %T", ep)
	}
	ua := net.UDPAddrFromAddrPort(se.AddrPort)
	mp := b.msgs.Get().(*[]ipv4.Message)
	defer b.msgs.Put(mp)
	bc := newBatchConn(c, b.addr.Is6() && !b.addr.Is4In6())
	for len(bufs) > 0 {
		ms := (*mp)[:min(len(bufs), len(*mp))]
		for i := range ms {
			ms[i].Buffers[0], ms[i].Addr = bufs[i], ua
		}
		n, err := bc.WriteBatch(ms, 0)
		if err != nil {
			return err
		}
		bufs = bufs[n:]
	}
	return nil
}

// ParseEndpoint parses an IP:port.
func (b *addrBind) ParseEndpoint(s string) (conn.Endpoint, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil, err
	}
	return &conn.StdNetEndpoint{AddrPort: ap}, nil
}

// BatchSize is what one recvmmsg or sendmmsg takes.
func (b *addrBind) BatchSize() int { return conn.IdealBatchSize }
