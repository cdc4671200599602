package wggate

import (
	"errors"
	"os"
	"sync"
	"sync/atomic"

	wgtun "golang.zx2c4.com/wireguard/tun"
)

// chanTUN is a userspace tun.Device for a WireGuard device with no kernel
// interface behind it: what the device decrypts goes to a function, and what
// it should encrypt is fed in through Inject. The entry's relay sits on it.
type chanTUN struct {
	mtu     int
	deliver func(bufs [][]byte, offset int) // decrypted packets, each at offset; only valid during the call
	// in carries batches of packets: one hand-over (and so at most one
	// wake-up of the device's reader) per batch the relay read.
	in     chan []*[]byte
	limit  int64        // the most packets queued in in
	queued atomic.Int64 // packets in in
	events chan wgtun.Event
	closed chan struct{}
	once   sync.Once

	pending []*[]byte // Read's rest of a batch; only Read touches it
}

func newChanTUN(mtu, queue int, deliver func(bufs [][]byte, offset int)) *chanTUN {
	t := &chanTUN{
		mtu:     mtu,
		deliver: deliver,
		in:      make(chan []*[]byte, queue),
		limit:   int64(queue),
		events:  make(chan wgtun.Event, 1),
		closed:  make(chan struct{}),
	}
	// No EventUp: the gateway brings the device up itself, on the thread
	// (and network namespace) that owns it; an event would make the
	// device's own goroutine do it, perhaps first and elsewhere.
	return t
}

// Inject queues a packet (a bufPool buffer, which Read returns to the pool)
// for the device to encrypt to the peer its destination belongs to; see
// InjectBatch.
func (t *chanTUN) Inject(pkt *[]byte) bool { return t.InjectBatch([]*[]byte{pkt}) }

// InjectBatch queues packets (bufPool buffers, which Read returns to the
// pool) as one hand-over. It never blocks: with the queue full (or pkts
// empty) it reports false and the caller keeps the buffers.
func (t *chanTUN) InjectBatch(pkts []*[]byte) bool {
	select {
	case <-t.closed:
		return false
	default:
	}
	n := int64(len(pkts))
	if n == 0 || t.queued.Add(n) > t.limit {
		t.queued.Add(-n)
		return false
	}
	select {
	case t.in <- pkts:
		return true
	default: // cannot happen: in has a slot per packet
		t.queued.Add(-n)
		return false
	}
}

var errClosed = errors.New("wggate: tun closed")

// chanTUNBatch is the most packets the device reads at once: what it then
// encrypts and sends to a client in one go (UDP GSO), as for a kernel TUN.
const chanTUNBatch = 128

// Read hands the device up to len(bufs) queued packets, blocking for the
// first. wireguard-go reads from one goroutine.
func (t *chanTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if len(t.pending) == 0 {
		select {
		case t.pending = <-t.in:
		case <-t.closed:
			return 0, os.ErrClosed
		}
	}
	n := 0
	for n < len(bufs) {
		if len(t.pending) == 0 {
			select {
			case t.pending = <-t.in:
				continue
			default:
			}
			break
		}
		pkt := t.pending[0]
		t.pending[0] = nil
		t.pending = t.pending[1:]
		t.queued.Add(-1)
		sizes[n] = copy(bufs[n][offset:], *pkt)
		bufPool.Put(pkt)
		n++
	}
	return n, nil
}

func (t *chanTUN) Write(bufs [][]byte, offset int) (int, error) {
	select {
	case <-t.closed:
		return 0, errClosed
	default:
	}
	t.deliver(bufs, offset)
	return len(bufs), nil
}

func (t *chanTUN) File() *os.File             { return nil }
func (t *chanTUN) MTU() (int, error)          { return t.mtu, nil }
func (t *chanTUN) Name() (string, error)      { return "wgentry", nil }
func (t *chanTUN) Events() <-chan wgtun.Event { return t.events }
func (t *chanTUN) BatchSize() int             { return chanTUNBatch }
func (t *chanTUN) Close() error {
	t.once.Do(func() {
		close(t.closed)
		close(t.events)
	})
	return nil
}
