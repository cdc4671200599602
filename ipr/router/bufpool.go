package router

// freeBufs bounds the packet buffers kept for reuse: a burst's worth, beyond
// which a returned buffer is left to the garbage collector.
const freeBufs = 1024

// bufPool recycles the buffers that packets from the TUN are copied into
// while they wait in a session's queue, so that a packet costs no
// allocation once the router runs warm. Every buffer has the capacity of
// the largest packet FromTUN queues.
type bufPool struct {
	size int
	free chan []byte
}

func newBufPool(size int) bufPool {
	return bufPool{size: size, free: make(chan []byte, freeBufs)}
}

// get returns an empty buffer.
func (p bufPool) get() []byte {
	select {
	case b := <-p.free:
		return b
	default:
		return make([]byte, 0, p.size)
	}
}

// put takes back a buffer get returned; nothing may use it afterwards.
func (p bufPool) put(b []byte) {
	if cap(b) != p.size {
		return
	}
	select {
	case p.free <- b[:0]:
	default:
	}
}
