package link

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// Read buffer sizes. A connection starts with a buffer that holds a few
// Sphinx packets, so thousands of mostly idle client connections stay cheap,
// and grows only when the peer sends larger (batched) messages.
const (
	readBufferInitial = 8 << 10
	readBufferMax     = 2 * (2 + MaxMessageLen)
)

// msgReader splits a byte stream into length-prefixed messages. It reads
// ahead as much as the socket has, so a burst of messages costs one system
// call, and hands out messages in place, without copying them.
type msgReader struct {
	r          io.Reader
	buf        []byte
	start, end int // buffered, unconsumed bytes are buf[start:end]
}

func newMsgReader(r io.Reader) *msgReader {
	return &msgReader{r: r, buf: make([]byte, readBufferInitial)}
}

// next returns the next message body. It aliases the reader's buffer and is
// valid, and may be modified in place, until the following call.
func (m *msgReader) next() ([]byte, error) {
	if err := m.fill(2); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(m.buf[m.start:]))
	if err := m.fill(2 + n); err != nil {
		return nil, err
	}
	msg := m.buf[m.start+2 : m.start+2+n : m.start+2+n]
	m.start += 2 + n
	return msg, nil
}

// fill makes at least need bytes available in buf[start:end].
func (m *msgReader) fill(need int) error {
	for m.end-m.start < need {
		if len(m.buf)-m.start < need {
			m.makeRoom(need)
		}
		n, err := m.r.Read(m.buf[m.end:])
		m.end += n
		if m.end-m.start >= need {
			return nil
		}
		if err != nil {
			if err == io.EOF && m.end > m.start {
				err = fmt.Errorf("stream ended inside a message: %w", io.ErrUnexpectedEOF)
			}
			return err
		}
	}
	return nil
}

// makeRoom moves the buffered bytes to the front of buf, first growing buf
// if even that would not fit need bytes.
func (m *msgReader) makeRoom(need int) {
	buf := m.buf
	if len(buf) < need {
		buf = make([]byte, min(max(2*len(buf), need), readBufferMax))
	}
	m.end = copy(buf, m.buf[m.start:m.end])
	m.start = 0
	m.buf = buf
}

// handlerError marks an error returned by the Handler, as opposed to a
// malformed frame.
type handlerError struct{ err error }

func (e handlerError) Error() string { return "handler: " + e.err.Error() }
func (e handlerError) Unwrap() error { return e.err }

// readLoop is the reader goroutine: it reads, decrypts and checks one message
// at a time and hands its frames to the Handler. Any malformed input ends the
// connection with a counted reason.
func (c *Conn) readLoop() {
	defer c.exit()
	mr := newMsgReader(c.nc)
	deliver := c.deliver // bind once: a method value allocates
	var idleUntil time.Time
	for {
		if c.idleTimeout > 0 {
			// Move the deadline only once it is within IdleTimeout, so a
			// busy link resets its timer once per quarter of the timeout,
			// not on every message.
			if now := time.Now(); idleUntil.Sub(now) < c.idleTimeout {
				idleUntil = now.Add(c.idleTimeout + c.idleTimeout/4)
				if err := c.nc.SetReadDeadline(idleUntil); err != nil {
					c.fail(fmt.Errorf("link idle deadline for %s: %w", c.nc.RemoteAddr(), err))
					return
				}
			}
		}
		msg, err := mr.next()
		if err != nil {
			if c.idleTimeout > 0 && errors.Is(err, os.ErrDeadlineExceeded) {
				c.stats.IdleClosed.Add(1)
				err = fmt.Errorf("%w: nothing received for %v", ErrIdle, c.idleTimeout)
			}
			c.fail(fmt.Errorf("link read from %s: %w", c.nc.RemoteAddr(), err))
			return
		}
		c.stats.BytesReceived.Add(uint64(2 + len(msg)))
		if len(msg) < TagLen+FrameHeaderLen {
			c.stats.BadMessages.Add(1)
			c.fail(fmt.Errorf("link message from %s: length %d cannot hold a tag and a frame", c.nc.RemoteAddr(), len(msg)))
			return
		}
		// Open in place; msg is ours until the next read.
		plain, err := c.recv.open(msg[:0], msg)
		if err != nil {
			c.stats.BadMessages.Add(1)
			c.fail(fmt.Errorf("link message from %s: %w", c.nc.RemoteAddr(), err))
			return
		}
		c.stats.MessagesReceived.Add(1)
		c.rxFrames = 0
		err = DecodeFrames(plain, deliver)
		c.stats.FramesReceived.Add(c.rxFrames)
		if err != nil {
			var he handlerError
			if errors.As(err, &he) {
				c.stats.HandlerErrors.Add(1)
			} else {
				c.stats.BadFrames.Add(1)
			}
			c.fail(fmt.Errorf("link frame from %s: %w", c.nc.RemoteAddr(), err))
			return
		}
	}
}

// deliver gives one decoded frame to the Handler with a payload it owns.
func (c *Conn) deliver(f Frame) error {
	if f.Kind == KindControl {
		c.stats.ControlIgnored.Add(1)
		return nil
	}
	c.rxFrames++
	if c.handler == nil {
		return nil
	}
	owned := make([]byte, len(f.Payload))
	copy(owned, f.Payload)
	f.Payload = owned
	if err := c.handler(c, f); err != nil {
		return handlerError{err}
	}
	return nil
}
