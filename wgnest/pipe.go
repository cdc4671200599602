package wgnest

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"

	"golang.zx2c4.com/wireguard/conn"
	wgtun "golang.zx2c4.com/wireguard/tun"
)

// batchSize is the most packets one hand-over carries, each way: what the
// inner bind and the outer tun report as their BatchSize, so a whole
// batch always fits the buffers the devices pass.
const batchSize = conn.IdealBatchSize

// queuedBatches bounds each direction of the pipe. A full queue blocks the
// writer (as a socket's send buffer would), so a fast sender is slowed to
// the other device's pace instead of losing packets.
const queuedBatches = 4

// batch is packets handed from one device to the other.
type batch struct {
	bufs [][]byte // batchSize buffers of bufSize bytes
	lens []int
	n    int
}

// pipe joins the inner device's bind to the outer device's tun. Up: the
// inner bind's datagrams, wrapped (Datagram), become packets the outer tun
// reads. Down: packets the outer device writes to its tun are unwrapped
// and, when they are UDP from the exit's endpoint to the client's address
// and port, received by the inner bind.
type pipe struct {
	src4, src6 netip.Addr     // the client's addresses in the outer tunnel
	port       uint16         // the inner bind's port in the outer tunnel
	exit       netip.AddrPort // the exit's WireGuard endpoint
	exitEP     conn.Endpoint  // exit as an interface value, made once: a conversion per packet allocated
	mtu        int            // the outer tun's
	bufSize    int

	up, down chan *batch
	closed   chan struct{}
	once     sync.Once
	pool     sync.Pool

	// dropped counts packets the outer device wrote that were not the
	// exit's datagrams to us, or did not fit.
	dropped atomic.Uint64
}

func newPipe(src4, src6 netip.Addr, port uint16, exit netip.AddrPort, mtu int) *pipe {
	p := &pipe{
		src4: src4, src6: src6, port: port, exit: exit, exitEP: endpoint(exit), mtu: mtu, bufSize: mtu,
		up:     make(chan *batch, queuedBatches),
		down:   make(chan *batch, queuedBatches),
		closed: make(chan struct{}),
	}
	p.pool.New = func() any {
		backing := make([]byte, batchSize*p.bufSize)
		b := &batch{bufs: make([][]byte, batchSize), lens: make([]int, batchSize)}
		for i := range b.bufs {
			b.bufs[i] = backing[i*p.bufSize : (i+1)*p.bufSize : (i+1)*p.bufSize]
		}
		return b
	}
	return p
}

func (p *pipe) get() *batch  { b := p.pool.Get().(*batch); b.n = 0; return b }
func (p *pipe) put(b *batch) { p.pool.Put(b) }

// close unblocks every side for good.
func (p *pipe) close() { p.once.Do(func() { close(p.closed) }) }

// push hands b to the other side, or returns false once the pipe is closed.
func (p *pipe) push(ch chan *batch, b *batch) bool {
	select {
	case ch <- b:
		return true
	case <-p.closed:
		p.put(b)
		return false
	}
}

// endpoint is a peer's address as the inner bind knows it: where in the
// outer tunnel its datagrams go.
type endpoint netip.AddrPort

func (e endpoint) ClearSrc()           {}
func (e endpoint) SrcToString() string { return "" }
func (e endpoint) DstToString() string { return netip.AddrPort(e).String() }
func (e endpoint) DstIP() netip.Addr   { return netip.AddrPort(e).Addr() }
func (e endpoint) SrcIP() netip.Addr   { return netip.Addr{} }

// DstToBytes feeds WireGuard's cookie MACs, as the standard bind's does.
func (e endpoint) DstToBytes() []byte {
	b, _ := netip.AddrPort(e).MarshalBinary()
	return b
}

// innerBind is the inner device's conn.Bind: no socket, the pipe.
type innerBind struct {
	p *pipe

	mu   sync.Mutex
	gone chan struct{} // closed by Close: the receive funcs of the last Open return
}

func (b *innerBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.gone != nil {
		return nil, 0, conn.ErrBindAlreadyOpen
	}
	gone := make(chan struct{})
	b.gone = gone
	return []conn.ReceiveFunc{func(pkts [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		return b.receive(gone, pkts, sizes, eps)
	}}, b.p.port, nil
}

// Close ends the receive funcs of the last Open; the device reopens the
// bind on every Up, so the pipe stays.
func (b *innerBind) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.gone != nil {
		close(b.gone)
		b.gone = nil
	}
	return nil
}

func (b *innerBind) receive(gone chan struct{}, pkts [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
	var bt *batch
	select {
	case bt = <-b.p.down:
	case <-gone:
		return 0, net.ErrClosed
	case <-b.p.closed:
		return 0, net.ErrClosed
	}
	n := 0
	for i := 0; i < bt.n; i++ {
		if n == len(pkts) || bt.lens[i] > len(pkts[n]) {
			b.p.dropped.Add(1)
			continue
		}
		sizes[n] = copy(pkts[n], bt.bufs[i][:bt.lens[i]])
		eps[n] = b.p.exitEP
		n++
	}
	b.p.put(bt)
	return n, nil
}

// SetMark does nothing: the inner bind has no socket (the outer bind's
// carry the mark).
func (b *innerBind) SetMark(uint32) error { return nil }
func (b *innerBind) BatchSize() int       { return batchSize }

func (b *innerBind) ParseEndpoint(s string) (conn.Endpoint, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil, err
	}
	return endpoint(netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())), nil
}

// Send wraps each WireGuard message for ep as a Datagram from the client's
// outer tunnel address and queues it for the outer device.
func (b *innerBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	e, ok := ep.(endpoint)
	if !ok {
		return conn.ErrWrongEndpointType
	}
	dst := netip.AddrPort(e)
	src := b.p.src4
	if dst.Addr().Is6() {
		src = b.p.src6
	}
	if !src.IsValid() {
		return fmt.Errorf("wgnest: no outer tunnel address of the family of %s", dst)
	}
	bt := b.p.get()
	var errs error
	for _, msg := range bufs {
		if bt.n == batchSize {
			if !b.p.push(b.p.up, bt) {
				return net.ErrClosed
			}
			bt = b.p.get()
		}
		d := Datagram{Src: netip.AddrPortFrom(src, b.p.port), Dst: dst, Payload: msg}
		n, err := d.Marshal(bt.bufs[bt.n])
		if err != nil {
			errs = errors.Join(errs, err)
			continue
		}
		bt.lens[bt.n] = n
		bt.n++
	}
	if bt.n == 0 {
		b.p.put(bt)
		return errs
	}
	if !b.p.push(b.p.up, bt) {
		return net.ErrClosed
	}
	return errs
}

// outerTun is the outer device's tun: it reads what the inner bind sent
// and writes to the inner bind's receive.
type outerTun struct {
	p      *pipe
	events chan wgtun.Event
	once   sync.Once
}

func newOuterTun(p *pipe) *outerTun {
	return &outerTun{p: p, events: make(chan wgtun.Event)}
}

func (t *outerTun) File() *os.File             { return nil }
func (t *outerTun) MTU() (int, error)          { return t.p.mtu, nil }
func (t *outerTun) Name() (string, error)      { return "wgnest-outer", nil }
func (t *outerTun) Events() <-chan wgtun.Event { return t.events }
func (t *outerTun) BatchSize() int             { return batchSize }

// Close closes the pipe (the device is closing) and the events channel,
// which ends the device's event reader.
func (t *outerTun) Close() error {
	t.p.close()
	t.once.Do(func() { close(t.events) })
	return nil
}

func (t *outerTun) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	var bt *batch
	select {
	case bt = <-t.p.up:
	case <-t.p.closed:
		return 0, os.ErrClosed
	}
	n := 0
	for i := 0; i < bt.n && n < len(bufs); i++ {
		if offset+bt.lens[i] > len(bufs[n]) {
			continue
		}
		sizes[n] = copy(bufs[n][offset:], bt.bufs[i][:bt.lens[i]])
		n++
	}
	t.p.put(bt)
	return n, nil
}

// Write takes the packets the outer device decrypted. Only UDP from the
// exit's endpoint to the inner bind's address and port goes on: the entry
// could write anything into the tunnel, and the inner device should see
// only its peer's datagrams.
func (t *outerTun) Write(bufs [][]byte, offset int) (int, error) {
	p := t.p
	bt := p.get()
	for _, buf := range bufs {
		if len(buf) <= offset {
			continue
		}
		d, err := ParseDatagram(buf[offset:])
		if err != nil || !p.ours(d) || len(d.Payload) > p.bufSize {
			p.dropped.Add(1)
			continue
		}
		if bt.n == batchSize {
			if !p.push(p.down, bt) {
				return 0, os.ErrClosed
			}
			bt = p.get()
		}
		bt.lens[bt.n] = copy(bt.bufs[bt.n], d.Payload)
		bt.n++
	}
	if bt.n == 0 {
		p.put(bt)
		return len(bufs), nil
	}
	if !p.push(p.down, bt) {
		return 0, os.ErrClosed
	}
	return len(bufs), nil
}

// ours tells whether d is the exit's datagram to the inner bind.
func (p *pipe) ours(d Datagram) bool {
	src := netip.AddrPortFrom(d.Src.Addr().Unmap(), d.Src.Port())
	if src != p.exit || d.Dst.Port() != p.port {
		return false
	}
	dst := d.Dst.Addr().Unmap()
	return dst == p.src4 || dst == p.src6
}
