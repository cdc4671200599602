package client

import (
	"context"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/nym-go/nym/internal/testnet"
	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/gateway"
)

// shapeRecorder counts what a client hands its gateway.
type shapeRecorder struct {
	mu          sync.Mutex
	real, cover int
	sizes       map[int]int
}

func (r *shapeRecorder) onSend(_ time.Time, wire []byte, real bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if real {
		r.real++
	} else {
		r.cover++
	}
	r.sizes[len(wire)]++
}

func (r *shapeRecorder) take() (real, cover int, sizes map[int]int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	real, cover, sizes = r.real, r.cover, r.sizes
	r.real, r.cover, r.sizes = 0, 0, map[int]int{}
	return
}

// The packet rate a client shows its gateway is λ + the cover rate whether
// or not the application sends, pushed or through streams, and every packet
// has the same size: an observer of the client's link learns nothing from
// timing or size.
func TestTrafficShape(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 90 s")
	}
	if raceEnabled {
		t.Skip("the race detector makes Sphinx too slow to hold 55 packets/s through five nodes")
	}
	const phase = 30 * time.Second
	lp := NymDefaults()
	want := float64(time.Second)/float64(lp.SendInterval) + float64(time.Second)/float64(lp.CoverInterval) // 55/s

	n := testnet.Start(t, testnet.Options{})
	rec := &shapeRecorder{sizes: map[int]int{}}
	a := connect(t, n, func(c *Config) { c.Loopix = &lp; c.hooks = &testHooks{onSend: rec.onSend} })
	b := connect(t, n, nil)
	go func() { // b drains what it receives
		for range b.Receive() {
		}
	}()

	gw := func() *gateway.Gateway {
		for _, nd := range n.Nodes() {
			if directory.Key(nd.Identity()) == a.Address().Gateway {
				return nd.Gateway()
			}
		}
		t.Fatal("no gateway")
		return nil
	}()
	// forwarded counts, at the gateway, the packets a handed it.
	forwarded := func() uint64 {
		st, _ := gw.Client(a.Address().Identity)
		return st.Forwarded
	}

	const idle, pushing, streaming = 0, 1, 2
	check := func(name string, mode int) {
		rec.take()
		fwd0 := forwarded()
		start := time.Now()
		busy := mode != idle
		switch mode {
		case pushing:
			// Keep the send queue from running dry for the whole phase.
			ctx, cancel := context.WithTimeout(context.Background(), phase)
			defer cancel()
			go func() {
				for ctx.Err() == nil {
					a.Send(ctx, b.Address(), randomBytes(64<<10))
				}
			}()
		case streaming:
			// Two streams that always have a packet: they share the
			// slots, and add none.
			for range 2 {
				st, err := a.OpenStream(b.Address(), &testSource{t: t, limit: 1 << 30})
				if err != nil {
					t.Fatal(err)
				}
				defer st.Close()
				st.Wake()
			}
		}
		time.Sleep(phase)
		real, cover, sizes := rec.take()
		secs := time.Since(start).Seconds()
		rate := float64(forwarded()-fwd0) / secs
		t.Logf("%s: %.1f packets/s at the gateway (client: %d real, %d cover) over %.1f s; want %.1f", name, rate, real, cover, secs, want)
		if math.Abs(rate-want)/want > 0.10 {
			t.Errorf("%s: %.1f packets/s at the gateway, want %.1f ± 10%%", name, rate, want)
		}
		if len(sizes) != 1 {
			t.Errorf("%s: packets of %d different sizes: %v", name, len(sizes), sizes)
		}
		if busy && float64(real)/secs < 0.9*float64(time.Second)/float64(lp.SendInterval) {
			t.Errorf("%s: only %.1f real packets/s with a full queue", name, float64(real)/secs)
		}
		if !busy && real != 0 {
			t.Errorf("%s: %d real packets while idle", name, real)
		}
	}
	check("idle", idle)
	check("sending", pushing)
	check("streaming", streaming)
}
