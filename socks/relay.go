package socks

import (
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// relay copies both ways between the client and the destination until both
// directions have ended. An EOF in one direction is passed on as a
// half-close (CloseWrite) so protocols that shut down their sending side
// (HTTP/1.0 clients, `nc -N`) still get their answer; an error in either
// direction closes both connections.
func (s *Server) relay(ctx context.Context, client net.Conn, fromClient io.Reader, target net.Conn) {
	closeBoth := func() {
		client.Close()
		target.Close()
	}
	stop := context.AfterFunc(ctx, closeBoth)
	defer stop()
	defer closeBoth()

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		pipe(target, fromClient, &s.stats.bytesUp, closeBoth)
	}()
	pipe(client, target, &s.stats.bytesDown, closeBoth)
	wg.Wait()
}

// pipe copies src to dst, then half-closes dst, or calls abort on an error
// (or when dst cannot be half-closed).
func pipe(dst net.Conn, src io.Reader, n *atomic.Uint64, abort func()) {
	_, err := io.Copy(countWriter{dst, n}, src)
	if err != nil {
		abort()
		return
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		if cw.CloseWrite() == nil {
			return
		}
	}
	abort()
}

// countWriter adds what it writes to a counter as it goes, so Stats shows
// the bytes of long-lived connections too.
type countWriter struct {
	w io.Writer
	n *atomic.Uint64
}

func (c countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n.Add(uint64(n))
	return n, err
}
