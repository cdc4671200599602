package measure

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Workload is what one client does during a run.
type Workload uint8

// Workloads. Each connection a client opens is one flow at the exit, to a
// server port of the client's own (see flowPort), so the ground truth of
// which client owns an exit-side flow is known without asking the exit.
const (
	// Idle sends nothing but what its profile sends anyway (cover).
	Idle Workload = iota
	// Web loads pages: a connection per page, a small request and a
	// 10 kB document then three resources of 5-20 kB each, with a think
	// time (exponential, mean WebThink) between pages.
	Web
	// Bulk downloads BulkSize on a connection of its own, again and again
	// with a pause (exponential, mean BulkPause) between downloads.
	Bulk
	// Interactive keeps one connection open and exchanges a keystroke's
	// worth up (64 bytes) and a screen update down (256 bytes) at
	// exponential intervals of mean InteractiveInterval, like a shell.
	Interactive
)

func (w Workload) String() string {
	switch w {
	case Idle:
		return "idle"
	case Web:
		return "web"
	case Bulk:
		return "bulk"
	case Interactive:
		return "interactive"
	}
	return fmt.Sprintf("workload(%d)", uint8(w))
}

// Workload parameters: chosen so that a run of a minute or two gives each
// busy client several flows, and the whole network stays within what two
// loaded cores can carry at Nym's defaults (a download there runs at about
// 1.6 Mbit/s for one client alone).
//
// On a machine loaded by other work (load 15-20 on two cores) a page took
// most of a minute, so they are small: what the measurement needs is many
// flows, each long enough to show in the windows.
const (
	WebThink            = 3 * time.Second
	BulkSize            = 256 << 10
	BulkPause           = 3 * time.Second
	InteractiveInterval = 400 * time.Millisecond
)

// workloadOf spreads the workloads over the clients: web, bulk,
// interactive and idle in turn, so every mix of N >= 4 has all four.
func workloadOf(i int) Workload {
	return [...]Workload{Web, Bulk, Interactive, Idle}[i%4]
}

// ServerAddr is the internet host every client's flows go to.
var ServerAddr = netip.MustParseAddr("192.0.2.1")

// Ports: client i's j-th connection goes to port basePort + i*portsPer + j.
// A flow at the exit is then its own port, owned by one client.
const (
	basePort = 20000
	portsPer = 200
)

func flowPort(client, conn int) uint16 { return uint16(basePort + client*portsPer + conn) }

// request is the workload's wire format, client to server: the bytes to
// send back (u32) and a padding length (u32), then that many bytes of
// padding (the upstream part of the exchange). The server answers each
// request with exactly the asked-for bytes.
const requestLen = 8

func writeRequest(w io.Writer, down, up uint32) error {
	b := make([]byte, requestLen+up)
	binary.BigEndian.PutUint32(b, down)
	binary.BigEndian.PutUint32(b[4:], up)
	_, err := w.Write(b)
	return err
}

// maxExchange bounds what one request may ask for or carry: the server is
// the test's, but a bound costs nothing.
const maxExchange = 16 << 20

// serve answers requests on c until it closes.
func serve(c net.Conn) {
	defer c.Close()
	h := make([]byte, requestLen)
	buf := make([]byte, 32<<10)
	for {
		if _, err := io.ReadFull(c, h); err != nil {
			return
		}
		down, up := binary.BigEndian.Uint32(h), binary.BigEndian.Uint32(h[4:])
		if down > maxExchange || up > maxExchange {
			return
		}
		if _, err := io.CopyN(io.Discard, c, int64(up)); err != nil {
			return
		}
		for left := int(down); left > 0; {
			n := min(left, len(buf))
			if _, err := c.Write(buf[:n]); err != nil {
				return
			}
			left -= n
		}
	}
}

// exchange sends one request on c and reads its answer.
func exchange(c net.Conn, down, up uint32) error {
	if err := writeRequest(c, down, up); err != nil {
		return fmt.Errorf("request: %w", err)
	}
	if _, err := io.CopyN(io.Discard, c, int64(down)); err != nil {
		return fmt.Errorf("answer: %w", err)
	}
	return nil
}

// internet is the servers on the exit's internet side: a listener per
// flow port, opened before the client dials it.
type internet struct {
	// listenTCP listens on the exit's internet side (a userspace stack's).
	listenTCP func(netip.AddrPort) (net.Listener, error)
	wg        sync.WaitGroup
	mu        sync.Mutex
	lns       []net.Listener
}

// listen opens port p and serves one connection on it.
func (in *internet) listen(p uint16) error {
	ln, err := in.listenTCP(netip.AddrPortFrom(ServerAddr, p))
	if err != nil {
		return fmt.Errorf("listen on port %d: %w", p, err)
	}
	in.mu.Lock()
	in.lns = append(in.lns, ln)
	in.mu.Unlock()
	in.wg.Go(func() {
		c, err := ln.Accept()
		ln.Close()
		if err == nil {
			serve(c)
		}
	})
	return nil
}

// Close stops every listener; the servers end as their clients' tunnels
// close.
func (in *internet) Close() {
	in.mu.Lock()
	for _, ln := range in.lns {
		ln.Close()
	}
	in.mu.Unlock()
}

// dialer is a client's view: its stack behind the tunnel.
type dialer func(ctx context.Context, network, addr string) (net.Conn, error)

// flowStats counts what a client's workload did.
type flowStats struct {
	Flows, Failed int
	Bytes         int64
	Err           error // the first failure
}

func (st *flowStats) fail(err error) {
	st.Failed++
	if st.Err == nil {
		st.Err = err
	}
}

// runWorkload drives client i's workload w until ctx ends: it starts
// after a random delay in [0, spread), so clients do not start together.
//
// moved counts the flows that have carried an exchange, for the runner to
// wait on.
func runWorkload(ctx context.Context, rng *rand.Rand, in *internet, dial dialer, i int, w Workload, spread time.Duration, moved *atomic.Int64) flowStats {
	var st flowStats
	if w == Idle {
		return st
	}
	if !sleep(ctx, time.Duration(rng.Int64N(int64(spread)+1))) {
		return st
	}
	exp := func(mean time.Duration) time.Duration { return time.Duration(rng.ExpFloat64() * float64(mean)) }
	conn := 0
	// open dials the client's next flow; nil when ctx ended or the ports
	// ran out.
	open := func() net.Conn {
		if conn >= portsPer {
			return nil
		}
		p := flowPort(i, conn)
		conn++
		st.Flows++ // ports flowPort(i, 0..Flows-1) are this client's
		if err := in.listen(p); err != nil {
			st.fail(err)
			return nil
		}
		c, err := dial(ctx, "tcp", netip.AddrPortFrom(ServerAddr, p).String())
		if err != nil {
			st.fail(err)
			return nil
		}
		// The connection lives until ctx ends at the latest.
		stop := context.AfterFunc(ctx, func() { c.Close() })
		return &closer{Conn: c, stop: stop}
	}
	counted := map[net.Conn]bool{}
	do := func(c net.Conn, down, up uint32) bool {
		if err := exchange(c, down, up); err != nil {
			if ctx.Err() == nil {
				st.fail(err)
			}
			return false
		}
		st.Bytes += int64(down) + int64(up)
		if !counted[c] {
			counted[c] = true
			moved.Add(1)
		}
		return true
	}
	switch w {
	case Web:
		for ctx.Err() == nil {
			if c := open(); c != nil {
				if do(c, uint32(10<<10), 400) {
					for range 3 {
						if !do(c, uint32(5<<10+rng.IntN(15<<10)), 300) {
							break
						}
					}
				}
				c.Close()
			}
			if !sleep(ctx, exp(WebThink)) {
				break
			}
		}
	case Bulk:
		for ctx.Err() == nil {
			if c := open(); c != nil {
				do(c, BulkSize, 200)
				c.Close()
			}
			if !sleep(ctx, exp(BulkPause)) {
				break
			}
		}
	case Interactive:
		c := open()
		if c == nil {
			return st
		}
		defer c.Close()
		for sleep(ctx, exp(InteractiveInterval)) && do(c, 256, 64) {
		}
	}
	return st
}

// closer closes a flow's connection once, and forgets the context hook.
type closer struct {
	net.Conn
	stop func() bool
	once sync.Once
}

func (c *closer) Close() error {
	var err error
	c.once.Do(func() {
		c.stop()
		err = c.Conn.Close()
	})
	return err
}

// sleep waits d or until ctx ends; false if ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

var errNoFlows = errors.New("measure: no flows at the exit")
