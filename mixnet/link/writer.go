package link

import (
	"encoding/binary"
	"fmt"
	"sync"
	"time"
)

// flushThreshold is how many bytes of sealed messages the writer gathers
// before writing even though more frames are queued: large enough to make one
// system call carry dozens of packets, small enough to keep latency low.
const flushThreshold = 64 << 10

// batchBufferSize fits flushThreshold of sealed messages plus one more whole
// message, the most a batch can hold.
const batchBufferSize = flushThreshold + 2 + MaxMessageLen

// batchBuffers are shared by all writers: a connection holds one only while
// it writes, so idle connections cost no buffer memory.
var batchBuffers = sync.Pool{New: func() any {
	b := make([]byte, 0, batchBufferSize)
	return &b
}}

// writeLoop is the writer goroutine. It waits for a frame, then packs every
// frame already queued into as few Noise messages as possible and writes up
// to flushThreshold bytes of messages with one system call. It never waits
// for more frames to arrive, so batching adds no latency.
func (c *Conn) writeLoop() {
	defer c.exit()
	var next Frame // taken from the queue, not yet packed
	have := false
	for {
		if !have {
			select {
			case next = <-c.queue:
			case <-c.ctx.Done():
				return
			}
		}
		var err error
		if next, have, err = c.writeBatch(next); err != nil {
			c.fail(err)
			return
		}
	}
}

// writeBatch seals first and whatever else is queued into messages and writes
// them. When it stops because the batch is full, it returns the frame it took
// from the queue but could not fit, with have set.
func (c *Conn) writeBatch(first Frame) (next Frame, have bool, err error) {
	bp := batchBuffers.Get().(*[]byte)
	buf := (*bp)[:0]
	defer func() {
		*bp = buf[:0]
		batchBuffers.Put(bp)
	}()
	next = first
	var frames, messages uint64
	for {
		start := len(buf)
		buf = append(buf, 0, 0) // length prefix, filled in after sealing
		limit := len(buf) + MaxMessagePlaintext
		buf = next.appendUnchecked(buf)
		next.done()
		frames++
		have = false
	fill:
		for {
			select {
			case f := <-c.queue:
				if len(buf)+f.EncodedLen() > limit {
					next, have = f, true
					break fill
				}
				buf = f.appendUnchecked(buf)
				f.done()
				frames++
			default:
				break fill
			}
		}
		// Seal in place: the ciphertext exactly overwrites the plaintext,
		// which AEADs allow, and buf has room for the tag.
		sealed, err := c.send.seal(buf[:start+2], buf[start+2:])
		if err != nil {
			c.dropWritten(frames, have, next)
			return Frame{}, false, fmt.Errorf("link encrypt to %s: %w", c.nc.RemoteAddr(), err)
		}
		binary.BigEndian.PutUint16(sealed[start:], uint16(len(sealed)-start-2))
		buf = sealed
		messages++
		if !have || len(buf) >= flushThreshold {
			break
		}
	}
	if err := c.nc.SetWriteDeadline(time.Now().Add(c.writeTimeout)); err != nil {
		c.dropWritten(frames, have, next)
		return Frame{}, false, fmt.Errorf("link write to %s: %w", c.nc.RemoteAddr(), err)
	}
	if _, err := c.nc.Write(buf); err != nil {
		c.dropWritten(frames, have, next)
		return Frame{}, false, fmt.Errorf("link write to %s: %w", c.nc.RemoteAddr(), err)
	}
	c.stats.FramesSent.Add(frames)
	c.finished.Add(frames)
	c.stats.MessagesSent.Add(messages)
	c.stats.BytesSent.Add(uint64(len(buf)))
	return next, have, nil
}

// dropWritten counts the frames lost with a failed batch, plus the one taken
// from the queue for the next batch.
func (c *Conn) dropWritten(frames uint64, havePending bool, pending Frame) {
	if havePending {
		frames++
		pending.done()
	}
	c.stats.DroppedWriteError.Add(frames)
	c.finished.Add(frames)
}
