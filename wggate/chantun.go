package wggate

import (
	"errors"
	"os"
	"sync"

	wgtun "golang.zx2c4.com/wireguard/tun"
)

// chanTUN is a userspace tun.Device for a WireGuard device with no kernel
// interface behind it: what the device decrypts goes to a function, and what
// it should encrypt is fed in through Inject. The entry's relay sits on it.
type chanTUN struct {
	mtu     int
	deliver func(pkt []byte) // decrypted packets; pkt is only valid during the call
	in      chan *[]byte
	events  chan wgtun.Event
	closed  chan struct{}
	once    sync.Once
}

func newChanTUN(mtu, queue int, deliver func([]byte)) *chanTUN {
	t := &chanTUN{
		mtu:     mtu,
		deliver: deliver,
		in:      make(chan *[]byte, queue),
		events:  make(chan wgtun.Event, 1),
		closed:  make(chan struct{}),
	}
	// No EventUp: the gateway brings the device up itself, on the thread
	// (and network namespace) that owns it; an event would make the
	// device's own goroutine do it, perhaps first and elsewhere.
	return t
}

// Inject queues a packet (a bufPool buffer, which Read returns to the pool)
// for the device to encrypt to the peer its destination belongs to. It
// never blocks: with the queue full it reports false and the caller keeps
// the buffer.
func (t *chanTUN) Inject(pkt *[]byte) bool {
	select {
	case <-t.closed:
		return false
	default:
	}
	select {
	case t.in <- pkt:
		return true
	default:
		return false
	}
}

var errClosed = errors.New("wggate: tun closed")

func (t *chanTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	var pkt *[]byte
	select {
	case pkt = <-t.in:
	case <-t.closed:
		return 0, os.ErrClosed
	}
	n := 0
	for {
		sizes[n] = copy(bufs[n][offset:], *pkt)
		bufPool.Put(pkt)
		n++
		if n == len(bufs) {
			return n, nil
		}
		select {
		case pkt = <-t.in:
		default:
			return n, nil
		}
	}
}

func (t *chanTUN) Write(bufs [][]byte, offset int) (int, error) {
	select {
	case <-t.closed:
		return 0, errClosed
	default:
	}
	for _, b := range bufs {
		t.deliver(b[offset:])
	}
	return len(bufs), nil
}

func (t *chanTUN) File() *os.File             { return nil }
func (t *chanTUN) MTU() (int, error)          { return t.mtu, nil }
func (t *chanTUN) Name() (string, error)      { return "wgentry", nil }
func (t *chanTUN) Events() <-chan wgtun.Event { return t.events }
func (t *chanTUN) BatchSize() int             { return 32 }
func (t *chanTUN) Close() error {
	t.once.Do(func() {
		close(t.closed)
		close(t.events)
	})
	return nil
}
