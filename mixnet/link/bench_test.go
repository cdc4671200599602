package link

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// cpuTime is the user plus system CPU time this process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkLinkThroughput pushes 2413-byte frames (a Sphinx packet) through a
// real loopback Noise connection, end to end: enqueue, batch, encrypt, TCP,
// decrypt, decode, hand to the Handler. ns/op is the cost per frame with both
// ends on this machine.
//
// window is how many frames may be in flight. At 1024 the writer batches
// (the node under load); at 1 every frame travels alone in its own message
// and system calls (a lightly loaded node).
func BenchmarkLinkThroughput(b *testing.B) {
	for _, window := range []int{1024, 1} {
		b.Run(fmt.Sprintf("window=%d", window), func(b *testing.B) { benchLink(b, window) })
	}
}

func benchLink(b *testing.B, window int) {
	const size = 2413
	logger := slog.New(slog.DiscardHandler)
	var received atomic.Int64
	done := make(chan struct{})
	n := int64(b.N)
	// Credits bound the frames in flight, so the sender sleeps instead of
	// spinning on a full queue (which would burn the CPU being measured).
	credits := make(chan struct{}, window)
	for range window {
		credits <- struct{}{}
	}
	srv, err := NewServer(ServerConfig{Config: Config{
		Static: newKey(b),
		Logger: logger,
		Handler: func(_ *Conn, f Frame) error {
			credits <- struct{}{}
			if received.Add(1) == n {
				close(done)
			}
			return nil
		},
	}})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	defer func() {
		cancel()
		<-served
	}()
	c, err := Dial(ctx, ln.Addr().String(), srv.cfg.Static.Public, Config{Static: newKey(b), Logger: logger, QueueLen: window})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()

	f := Frame{Kind: KindPacket, Payload: payload(size, 0)}
	b.SetBytes(size)
	b.ReportAllocs()
	cpu0 := cpuTime(b)
	b.ResetTimer()
	for range b.N {
		<-credits
		if !c.Send(f) {
			b.Fatal("Send dropped a frame within the credit window")
		}
	}
	<-done
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
	// CPU time of the whole process (both ends of the link) per frame: the
	// figure to hold against the per-core budget, and unlike ns/op it does
	// not grow when other processes share the machine.
	b.ReportMetric(float64((cpuTime(b)-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/frame")
	if m := c.Stats().MessagesSent.Load(); m > 0 {
		b.ReportMetric(float64(c.Stats().FramesSent.Load())/float64(m), "frames/msg")
	}
}
