package wggate

import (
	"errors"
	"iter"
	"net"
	"sync/atomic"

	"golang.org/x/net/ipv4"
)

// maxGSOSegments and maxGSOBytes bound one UDP_SEGMENT message: the
// kernel's UDP_MAX_SEGMENTS, and a UDP datagram's length less headers.
// UDP GRO hands over at most maxGSOSegments datagrams per read too.
const (
	maxGSOSegments = 64
	maxGSOBytes    = 65535 - 48
)

// gsoBatch turns datagrams to one destination into the messages of one
// sendmmsg: a message per datagram, or with UDP GSO per run of equal-size
// datagrams (the last of a run may be shorter), each datagram an iovec of
// its own, so nothing is copied. The relay's sockets towards exits and the
// door's socket (addrBind) both send through it.
type gsoBatch struct {
	msgs []ipv4.Message
	segs []int // segs[i] is how many datagrams msgs[i] carries
	oob  [][]byte
}

// newGSOBatch makes a batch of up to n messages.
func newGSOBatch(n int) gsoBatch {
	b := gsoBatch{msgs: make([]ipv4.Message, n), segs: make([]int, n), oob: make([][]byte, n)}
	for i := range b.msgs {
		b.msgs[i].Buffers = make([][]byte, 0, maxGSOSegments)
		b.oob[i] = make([]byte, gsoOOBSize)
	}
	return b
}

// build turns pay (at most len(b.msgs) datagrams) into messages to addr
// (nil on a connected socket), runs of equal size joined when gso.
func (b *gsoBatch) build(pay [][]byte, addr net.Addr, gso bool) []ipv4.Message {
	n, size, bytes := 0, 0, 0
	for _, p := range pay {
		if gso && n > 0 {
			m := &b.msgs[n-1]
			// A run continues while its datagrams are of its size; a
			// shorter one ends it.
			if len(p) <= size && len(m.Buffers[len(m.Buffers)-1]) == size &&
				b.segs[n-1] < maxGSOSegments && bytes+len(p) <= maxGSOBytes {
				m.Buffers = append(m.Buffers, p)
				b.segs[n-1]++
				bytes += len(p)
				continue
			}
		}
		m := &b.msgs[n]
		m.Buffers = append(m.Buffers[:0], p)
		m.OOB, m.Addr = nil, addr
		b.segs[n] = 1
		size, bytes = len(p), len(p)
		n++
	}
	for i := range n {
		if b.segs[i] > 1 {
			b.msgs[i].OOB = putGSO(b.oob[i], len(b.msgs[i].Buffers[0]))
		}
	}
	return b.msgs[:n]
}

// write sends pay (at most len(b.msgs) datagrams) to addr through bc in
// as few sendmmsg calls as it can, with UDP GSO while gso holds. When the
// kernel refuses a GSO message, that message's datagrams and the rest go
// again one by one; on EIO (the way out cannot segment) it stores false
// in gso for good. A datagram the kernel refuses singly (an ICMP error the
// socket held, a full buffer) is lost, as a single send's would be, and
// the rest get their own try. It returns the datagrams and bytes sent and
// the errors of those lost; it keeps no reference to pay.
func (b *gsoBatch) write(bc batchConn, pay [][]byte, addr net.Addr, gso *atomic.Bool) (sent, bytes int, err error) {
	msgs := b.build(pay, addr, gso.Load())
	used := len(msgs)
	for i := 0; i < len(msgs); {
		n, werr := bc.WriteBatch(msgs[i:], 0)
		switch {
		case werr != nil && b.segs[i] > 1:
			if gsoRefused(werr) {
				gso.Store(false)
			}
			done := 0
			for _, s := range b.segs[:i] {
				done += s
			}
			pay = pay[done:]
			msgs, i = b.build(pay, addr, false), 0
			used = max(used, len(msgs))
			continue
		case errors.Is(werr, net.ErrClosed):
			err = errors.Join(err, werr)
			i = len(msgs)
			continue
		case werr != nil:
			err = errors.Join(err, werr)
			n = 1
		default:
			for _, m := range msgs[i : i+n] {
				for _, p := range m.Buffers {
					bytes += len(p)
				}
				sent += len(m.Buffers)
			}
		}
		i += n
	}
	for i := range b.msgs[:used] {
		clear(b.msgs[i].Buffers)
		b.msgs[i].Buffers = b.msgs[i].Buffers[:0]
		b.msgs[i].Addr = nil
	}
	return sent, bytes, err
}

// segments yields the datagrams of a read of data that UDP GRO may have
// coalesced: runs of seg bytes, the last perhaps shorter. seg is what the
// control message said; 0, negative or not less than len(data) means one
// datagram. An empty read yields nothing.
func segments(data []byte, seg int) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		if seg <= 0 {
			seg = len(data)
		}
		for len(data) > 0 {
			d := data[:min(seg, len(data))]
			data = data[len(d):]
			if !yield(d) {
				return
			}
		}
	}
}
