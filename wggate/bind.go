package wggate

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"

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
	addr  netip.Addr
	log   *slog.Logger
	sends sync.Pool // *gsoBatch for Send

	// gso: Send joins runs of equal-size datagrams to one peer into one
	// UDP_SEGMENT message (cleared for good when the kernel says EIO).
	gso atomic.Bool

	mu sync.Mutex
	c  *net.UDPConn
	bc batchConn // c's batch view for Send, made once per Open
}

func newAddrBind(addr netip.Addr, log *slog.Logger) *addrBind {
	b := &addrBind{addr: addr, log: log}
	b.sends.New = func() any { g := newGSOBatch(conn.IdealBatchSize); return &g }
	return b
}

// Open binds the socket to the address and port, with UDP GSO and GRO
// where the kernel has them.
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
	gso, gro := udpOffload(c)
	b.gso.Store(gso)
	b.c, b.bc = c, newBatchConn(c, b.addr.Is6() && !b.addr.Is4In6())
	r := newBindReader(newBatchConn(c, b.addr.Is6() && !b.addr.Is4In6()), gro, conn.IdealBatchSize)
	return []conn.ReceiveFunc{r.read}, uint16(c.LocalAddr().(*net.UDPAddr).Port), nil
}

// bindReader is addrBind's receive function. The device calls it from one
// goroutine: its messages are its own.
type bindReader struct {
	bc   batchConn
	gro  bool
	ms   []ipv4.Message
	last *conn.StdNetEndpoint
}

func newBindReader(bc batchConn, gro bool, n int) *bindReader {
	r := &bindReader{bc: bc, gro: gro, ms: make([]ipv4.Message, n)}
	for i := range r.ms {
		r.ms[i].Buffers = make([][]byte, 1)
		if gro {
			r.ms[i].OOB = make([]byte, gsoOOBSize)
		}
	}
	return r
}

// read fills pkts with datagrams, their sizes and senders. Without GRO,
// one recvmmsg of up to len(pkts) datagrams. With GRO, each read message
// may be a burst of up to maxGSOSegments datagrams of one sender, so it
// reads len(pkts)/maxGSOSegments messages into the last slots (the device
// passes buffers of 64 KiB, device.MaxMessageSize) and splits them
// forward, as wireguard-go's StdNetBind does: a datagram is copied into a
// slot only once that slot's message has been split, so none is
// overwritten unread.
func (r *bindReader) read(pkts [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
	n := min(len(pkts), len(r.ms))
	if n == 0 {
		return 0, nil
	}
	at := 0
	if r.gro {
		at = n - max(1, n/maxGSOSegments)
	}
	for i := at; i < n; i++ {
		r.ms[i].Buffers[0] = pkts[i]
		if r.gro {
			r.ms[i].OOB = r.ms[i].OOB[:cap(r.ms[i].OOB)]
		}
	}
	got, err := r.bc.ReadBatch(r.ms[at:n], 0)
	if err != nil {
		return 0, err
	}
	if !r.gro {
		for i := range got {
			sizes[i], eps[i] = r.ms[i].N, r.endpoint(r.ms[i].Addr)
			if eps[i] == nil {
				sizes[i] = 0
			}
		}
		return got, nil
	}
	return r.split(pkts, sizes, eps, at, at+got), nil
}

// split spreads messages ms[from:to], read into pkts[from:to], over pkts
// from the first slot on, each a datagram of its message's sender. A
// message cut short (MSG_TRUNC) or from no address is dropped; so are the
// datagrams of a burst that find no free slot, which the kernel's bound
// of maxGSOSegments per message never causes, but a hostile segment size
// could.
func (r *bindReader) split(pkts [][]byte, sizes []int, eps []conn.Endpoint, from, to int) int {
	out := 0
	for i := from; i < to; i++ {
		m := &r.ms[i]
		ep := r.endpoint(m.Addr)
		if ep == nil || m.Flags&syscall.MSG_TRUNC != 0 {
			continue
		}
		seg := groSize(m.OOB[:m.NN])
		for d := range segments(pkts[i][:m.N], seg) {
			// Slot i is free once its own first datagram is taken
			// (copied within the buffer, never onto bytes not yet read);
			// slots past it hold messages still to split.
			if out > i {
				break
			}
			sizes[out] = copy(pkts[out], d)
			eps[out] = ep
			out++
		}
	}
	return out
}

// endpoint is a datagram's sender as the device knows it, or nil.
func (r *bindReader) endpoint(a net.Addr) conn.Endpoint {
	ua, _ := a.(*net.UDPAddr)
	if ua == nil {
		return nil
	}
	ap := ua.AddrPort()
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	// A batch mostly comes from one peer: its endpoint (never changed
	// once made) serves them all, not one allocation each.
	if r.last == nil || r.last.AddrPort != ap {
		r.last = &conn.StdNetEndpoint{AddrPort: ap}
	}
	return r.last
}

// Close closes the socket; the receive function then returns net.ErrClosed.
func (b *addrBind) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.c == nil {
		return nil
	}
	err := b.c.Close()
	b.c, b.bc = nil, nil
	return err
}

// SetMark: the door sets no fwmark.
func (b *addrBind) SetMark(mark uint32) error {
	if mark != 0 {
		return errors.New("wggate: fwmark not supported on an address-bound socket")
	}
	return nil
}

// Send writes bufs to ep in as few calls as the system allows: runs of
// equal-size datagrams as one UDP GSO message each. A datagram the kernel
// refuses is lost (its error returned), and the rest are still sent.
func (b *addrBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	b.mu.Lock()
	bc := b.bc
	b.mu.Unlock()
	if bc == nil {
		return net.ErrClosed
	}
	se, ok := ep.(*conn.StdNetEndpoint)
	if !ok {
		return fmt.Errorf("wggate: endpoint of type %T", ep)
	}
	ua := net.UDPAddrFromAddrPort(se.AddrPort)
	g := b.sends.Get().(*gsoBatch)
	defer b.sends.Put(g)
	gso := b.gso.Load()
	var errs error
	for len(bufs) > 0 {
		chunk := bufs[:min(len(bufs), len(g.msgs))]
		bufs = bufs[len(chunk):]
		_, _, err := g.write(bc, chunk, ua, &b.gso)
		errs = errors.Join(errs, err)
	}
	if gso && !b.gso.Load() {
		b.log.Debug("wireguard socket: UDP GSO refused; sending datagrams singly", "addr", b.addr)
	}
	return errs
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
