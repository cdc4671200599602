package link

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"time"
)

// ErrClosed is the reason recorded when Close ends a connection.
var ErrClosed = errors.New("link: connection closed")

// ErrIdle is the reason recorded when a connection ends after
// Config.IdleTimeout without receiving anything.
var ErrIdle = errors.New("link: idle timeout")

// Conn is an established, authenticated link. Its reader goroutine hands
// inbound frames to the Handler; its writer goroutine drains the send queue.
// All methods are safe for concurrent use.
type Conn struct {
	nc           net.Conn
	remoteStatic [32]byte
	send         *transportCipher // writer goroutine only
	recv         *transportCipher // reader goroutine only

	queue     chan Frame
	ownsQueue bool // false when a Pool keeps the queue across reconnects

	handler      Handler
	onClose      func(*Conn, error)
	onExit       func() // the owner's bookkeeping, run last
	stats        *Stats
	log          *slog.Logger
	writeTimeout time.Duration
	idleTimeout  time.Duration

	ctx          context.Context
	cancel       context.CancelCauseFunc
	stopCtxWatch func() bool
	running      atomic.Int32 // reader and writer goroutines still alive
	done         chan struct{}

	// For Flush: frames this Conn's Send queued, and frames its writer has
	// finished with (written or dropped). Only Send counts into queued, so
	// a Pool's frames leave Flush nothing to wait for.
	queued, finished atomic.Uint64

	rxFrames uint64 // frames delivered from the current message; reader only
}

// newConn wraps a finished handshake. The connection lives until Close, an
// I/O or protocol error, or the end of ctx. Nothing runs until start.
func newConn(ctx context.Context, nc net.Conn, s session, cfg *Config, queue chan Frame, ownsQueue bool, onExit func()) *Conn {
	cfg.Stats.countHandshake(s.hybrid)
	c := &Conn{
		nc:           nc,
		remoteStatic: s.remoteStatic,
		send:         s.send,
		recv:         s.recv,
		queue:        queue,
		ownsQueue:    ownsQueue,
		handler:      cfg.Handler,
		onClose:      cfg.OnClose,
		onExit:       onExit,
		stats:        cfg.Stats,
		log:          cfg.Logger.With("remote", nc.RemoteAddr().String()),
		writeTimeout: cfg.WriteTimeout,
		idleTimeout:  cfg.IdleTimeout,
		done:         make(chan struct{}),
	}
	c.ctx, c.cancel = context.WithCancelCause(ctx)
	return c
}

// start launches the reader and writer goroutines.
func (c *Conn) start() {
	c.stats.ConnsOpened.Add(1)
	c.running.Store(2)
	// Closing the socket is what unblocks a reader or writer stuck in a
	// system call when the connection's context ends.
	c.stopCtxWatch = context.AfterFunc(c.ctx, func() { c.nc.Close() })
	go c.readLoop()
	go c.writeLoop()
}

// RemoteStatic is the peer's authenticated static X25519 key: the responder
// key we dialled, or the initiator key a Server learned in the handshake.
func (c *Conn) RemoteStatic() [32]byte { return c.remoteStatic }

// RemoteAddr is the peer's network address.
func (c *Conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

// LocalAddr is our end's network address.
func (c *Conn) LocalAddr() net.Addr { return c.nc.LocalAddr() }

// Stats returns the counters this connection updates.
func (c *Conn) Stats() *Stats { return c.stats }

// Done is closed once the connection has ended and its goroutines stopped.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err returns why the connection ended (ErrClosed after Close), or nil while
// it is running.
func (c *Conn) Err() error {
	if c.ctx.Err() == nil {
		return nil
	}
	return context.Cause(c.ctx)
}

// Send queues f for writing and reports whether it was queued. It never
// blocks: when the queue is full, the connection is closed or f is invalid,
// f is dropped and counted. The writer copies f.Payload before writing but
// may read it until then, so the caller must not modify it after a
// successful Send.
func (c *Conn) Send(f Frame) bool {
	if !enqueue(c.queue, f, c.ctx.Done(), c.stats) {
		return false
	}
	c.queued.Add(1)
	return true
}

// flushPoll is how often Flush looks again; it runs only at shutdown.
const flushPoll = time.Millisecond

// Flush waits until every frame Send queued before the call has been
// written to the socket (or dropped with the connection), so that a Close
// that follows does not discard the last words of a client saying goodbye.
// It returns ctx's error if ctx ends first, and nil once the connection is
// closed: nothing more will be written then.
func (c *Conn) Flush(ctx context.Context) error {
	target := c.queued.Load()
	for c.finished.Load() < target {
		select {
		case <-ctx.Done():
			return fmt.Errorf("link flush: %w", ctx.Err())
		case <-c.done:
			return nil
		case <-time.After(flushPoll):
		}
	}
	return nil
}

// enqueue is the non-blocking Send shared by Conn and Pool.
func enqueue(q chan<- Frame, f Frame, closed <-chan struct{}, stats *Stats) bool {
	if f.Validate() != nil {
		stats.DroppedInvalid.Add(1)
		f.done()
		return false
	}
	select {
	case <-closed:
		stats.DroppedClosed.Add(1)
		f.done()
		return false
	default:
	}
	select {
	case q <- f:
		return true
	default:
		stats.DroppedQueueFull.Add(1)
		f.done()
		return false
	}
}

// Close ends the connection and waits for its goroutines to stop. Frames
// still queued are dropped and counted. It must not be called from the
// connection's own Handler.
func (c *Conn) Close() {
	c.cancel(ErrClosed)
	<-c.done
}

// fail records why the connection ends (the first reason wins) and starts
// tearing it down.
func (c *Conn) fail(err error) { c.cancel(err) }

// exit is deferred by both goroutines; the last one out finishes the
// teardown, so that Done means nothing of this connection is still running.
func (c *Conn) exit() {
	if c.running.Add(-1) != 0 {
		return
	}
	c.stopCtxWatch() // we close nc ourselves; no need for its goroutine
	c.cancel(ErrClosed)
	c.nc.Close()
	if c.ownsQueue {
		c.stats.DroppedClosed.Add(uint64(drain(c.queue)))
	}
	c.stats.ConnsClosed.Add(1)
	err := c.Err()
	c.log.Debug("link closed", "reason", err)
	if c.onClose != nil {
		c.onClose(c, err)
	}
	close(c.done)
	if c.onExit != nil {
		c.onExit()
	}
}

// drain empties q without blocking and returns how many frames it held.
func drain(q chan Frame) int {
	n := 0
	for {
		select {
		case f := <-q:
			f.done()
			n++
		default:
			return n
		}
	}
}
