package link

import (
	"sync"
	"testing"

	"github.com/nym-go/nym/internal/leakcheck"
)

// doneCounter counts Frame.Done calls per payload, to catch a frame handed
// back twice (its buffer would then be recycled while still in use) or
// never.
type doneCounter struct {
	mu    sync.Mutex
	calls map[*byte]int
}

func (d *doneCounter) done(p []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls[&p[0]]++
}

func (d *doneCounter) check(t *testing.T, frames []Frame) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, f := range frames {
		if n := d.calls[&f.Payload[0]]; n != 1 {
			t.Fatalf("frame %d: Done called %d times, want once", i, n)
		}
	}
}

// TestFrameDoneOncePerFrame: every frame's Done runs exactly once, after the
// writer has copied it (the peer then gets the bytes intact) or when it is
// dropped: invalid, refused after Close.
func TestFrameDoneOncePerFrame(t *testing.T) {
	leakcheck.Check(t)
	var got sink
	ts := startServer(t, "127.0.0.1:0", ServerConfig{Config: Config{Handler: got.handle}})
	c := dialTest(t, ts, Config{})
	d := &doneCounter{calls: make(map[*byte]int)}

	var sent []Frame
	for i := range 200 {
		f := Frame{Kind: KindPacket, Payload: payload(1+i*7, i), Done: d.done}
		sent = append(sent, f)
		if !c.Send(f) {
			t.Fatalf("Send %d refused", i)
		}
	}
	frames := got.waitN(t, len(sent))
	for i := range sent {
		if !equalFrame(frames[i], Frame{Kind: KindPacket, Payload: payload(1+i*7, i)}) {
			t.Fatalf("frame %d arrived changed", i)
		}
	}
	invalid := Frame{Kind: KindPacket, Payload: make([]byte, MaxFramePayload+1), Done: d.done}
	if c.Send(invalid) {
		t.Fatal("an oversized frame was accepted")
	}
	c.Close()
	afterClose := Frame{Kind: KindPacket, Payload: payload(10, 1), Done: d.done}
	if c.Send(afterClose) {
		t.Fatal("Send after Close accepted")
	}
	d.check(t, append(sent, invalid, afterClose))
}
