package mixnode

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nym-go/nym/internal/poll"
	"github.com/nym-go/nym/mixnet/sphinx"
)

// node is a Sphinx identity: an address and a key.
type node struct {
	addr [sphinx.AddressSize]byte
	key  *sphinx.PrivateKey
}

func newNode(t testing.TB) node {
	t.Helper()
	var n node
	if _, err := rand.Read(n.addr[:]); err != nil {
		t.Fatal(err)
	}
	n.key = sphinx.GenerateKey()
	return n
}

// indexAddr is a next-hop address that encodes i, so a test can tell which
// packet came out.
func indexAddr(i int) (a [sphinx.AddressSize]byte) {
	copy(a[:], "next-hop")
	binary.BigEndian.PutUint64(a[24:], uint64(i))
	return a
}

func addrIndex(a [sphinx.AddressSize]byte) int { return int(binary.BigEndian.Uint64(a[24:])) }

// packetVia builds a regular packet whose first hop is mix (holding it for
// delay) and whose second and last hop is next, carrying msg.
func packetVia(t testing.TB, mix *sphinx.PrivateKey, delay time.Duration, next node, msg []byte) []byte {
	t.Helper()
	route := []sphinx.Hop{
		{Address: [32]byte{'m', 'i', 'x'}, Key: mix.PublicKey(), Delay: delay},
		{Address: next.addr, Key: next.key.PublicKey()},
	}
	pkt, err := sphinx.NewPacket(route, sphinx.Destination{Address: [32]byte{'c', 'l', 'i'}}, msg, sphinx.SizeRegular)
	if err != nil {
		t.Fatal(err)
	}
	return pkt
}

// packetTo builds a packet whose first hop is mix and whose next hop has
// address to and key nextKey: for tests where only the next-hop address
// matters.
func packetTo(t testing.TB, mix *sphinx.PrivateKey, delay time.Duration, to [sphinx.AddressSize]byte, nextKey [32]byte) []byte {
	t.Helper()
	route := []sphinx.Hop{
		{Address: [32]byte{'m', 'i', 'x'}, Key: mix.PublicKey(), Delay: delay},
		{Address: to, Key: nextKey},
	}
	pkt, err := sphinx.NewPacket(route, sphinx.Destination{}, []byte("x"), sphinx.SizeRegular)
	if err != nil {
		t.Fatal(err)
	}
	return pkt
}

// buildParallel runs build(i) for i in [0, n) on every CPU.
func buildParallel(n int, build func(i int)) {
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				build(i)
			}
		})
	}
	wg.Wait()
}

// forwarded is one call of Config.Forward.
type forwarded struct {
	next [sphinx.AddressSize]byte
	pkt  []byte
	odd  bool
	at   time.Time
}

// harness runs a Mixer for one test.
type harness struct {
	*Mixer
	out  chan forwarded
	reg  *prometheus.Registry
	run  chan error // Run's result
	stop context.CancelFunc
}

// startMixer starts a Mixer whose Forward feeds h.out; tweak edits the config
// first. Cleanup stops it and checks Run returned.
func startMixer(t testing.TB, tweak func(*Config)) *harness {
	t.Helper()
	h := &harness{out: make(chan forwarded, 1<<16), reg: prometheus.NewRegistry(), run: make(chan error, 1)}
	cfg := Config{
		ReplayCapacity: 100_000,
		Forward: func(next [sphinx.AddressSize]byte, pkt []byte, odd bool) {
			h.out <- forwarded{next: next, pkt: pkt, odd: odd, at: time.Now()}
		},
		Registerer: h.reg,
		Logger:     slog.New(slog.DiscardHandler),
	}
	if tweak != nil {
		tweak(&cfg)
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.Mixer = m
	ctx, cancel := context.WithCancel(context.Background())
	h.stop = cancel
	go func() { h.run <- m.Run(ctx) }()
	t.Cleanup(func() { h.shutdown(t) })
	return h
}

// shutdown stops the Mixer and waits for Run to return; safe to call twice.
func (h *harness) shutdown(t testing.TB) {
	t.Helper()
	h.stop()
	select {
	case err, ok := <-h.run:
		if ok && err != nil {
			t.Errorf("Run: %v", err)
		}
		if ok {
			close(h.run)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func (h *harness) mustSetKeys(t testing.TB, keys ...RotationKey) {
	t.Helper()
	if err := h.SetKeys(keys...); err != nil {
		t.Fatal(err)
	}
}

// next waits for the next forwarded packet.
func (h *harness) next(t testing.TB) forwarded {
	t.Helper()
	select {
	case f := <-h.out:
		return f
	case <-time.After(10 * time.Second):
		t.Fatal("no packet forwarded within 10 s")
		return forwarded{}
	}
}

// metric returns the value of a counter or gauge, with reason as its label
// when not empty.
func (h *harness) metric(t testing.TB, name, reason string) float64 {
	t.Helper()
	families, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if reason != "" && (len(m.GetLabel()) != 1 || m.GetLabel()[0].GetValue() != reason) {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.GetCounter().GetValue()
			case m.Gauge != nil:
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("metric %s{reason=%q} not found", name, reason)
	return 0
}

func (h *harness) dropped(t testing.TB, reason string) float64 {
	return h.metric(t, "nym_mixnode_packets_dropped_total", reason)
}

// waitFor polls cond until it holds or ten seconds pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	poll.Until(t, 10*time.Second, what, cond)
}

// mixerGoroutines lists running goroutines that are inside the Mixer.
func mixerGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var found []string
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		if s := string(g); strings.Contains(s, "mixnode.(*Mixer).run") {
			found = append(found, s)
		}
	}
	return found
}

// openAt checks that f's packet, processed by the next node, carries msg.
func openAt(t testing.TB, next node, f forwarded, msg []byte) {
	t.Helper()
	if f.next != next.addr {
		t.Fatalf("forwarded to %x, want %x", f.next, next.addr)
	}
	p, err := next.key.Process(f.pkt)
	if err != nil {
		t.Fatalf("next hop cannot process the forwarded packet: %v", err)
	}
	if !p.Final {
		t.Fatal("next hop is not the final hop")
	}
	got, err := sphinx.OpenPayload(p.Payload)
	if err != nil {
		t.Fatalf("open payload: %v", err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("payload %q, want %q", got, msg)
	}
}
