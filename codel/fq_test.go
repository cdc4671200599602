package codel

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

// ipPacket makes an IPv4 (or IPv6) UDP packet of n bytes from src:sport to
// dst:dport.
func ipPacket(src, dst netip.Addr, sport, dport uint16, n int) []byte {
	if src.Is4() {
		p := make([]byte, max(n, 28))
		p[0], p[9] = 0x45, 17
		copy(p[12:16], src.AsSlice())
		copy(p[16:20], dst.AsSlice())
		binary.BigEndian.PutUint16(p[20:], sport)
		binary.BigEndian.PutUint16(p[22:], dport)
		return p
	}
	p := make([]byte, max(n, 48))
	p[0], p[6] = 0x60, 17
	copy(p[8:24], src.AsSlice())
	copy(p[24:40], dst.AsSlice())
	binary.BigEndian.PutUint16(p[40:], sport)
	binary.BigEndian.PutUint16(p[42:], dport)
	return p
}

var (
	hostA = netip.MustParseAddr("192.0.2.1")
	hostB = netip.MustParseAddr("198.51.100.2")
	hostC = netip.MustParseAddr("2001:db8::1")
	hostD = netip.MustParseAddr("2001:db8::2")
)

func TestIPFlow(t *testing.T) {
	same := IPFlow(ipPacket(hostA, hostB, 1000, 53, 60))
	if IPFlow(ipPacket(hostA, hostB, 1000, 53, 1400)) != same {
		t.Fatal("the same 5-tuple hashed to two flows")
	}
	others := [][]byte{
		ipPacket(hostA, hostB, 1001, 53, 60),
		ipPacket(hostB, hostA, 53, 1000, 60),
		ipPacket(hostC, hostD, 1000, 53, 60),
		ipPacket(hostD, hostC, 1000, 53, 60),
	}
	for i, p := range others {
		if IPFlow(p) == same {
			t.Fatalf("packet %d hashed to the flow of another 5-tuple", i)
		}
	}
	// A later fragment carries no ports: it hashes by addresses alone, the
	// same for every fragment of the pair.
	f1, f2 := ipPacket(hostA, hostB, 1, 2, 60), ipPacket(hostA, hostB, 3, 4, 60)
	f1[7], f2[7] = 10, 20
	if IPFlow(f1) != IPFlow(f2) {
		t.Fatal("later fragments of one address pair hashed apart")
	}
	for _, junk := range [][]byte{nil, {0x45}, make([]byte, 19), {0x70, 1, 2}} {
		if IPFlow(junk) != 0 {
			t.Fatalf("junk %x hashed to a flow", junk)
		}
	}
}

// portFlow is a deterministic Flow for tests: the IPv4 source port, so that
// the flows a test means to keep apart never share a queue (IPFlow's seed
// is random per process).
func portFlow(p []byte) uint64 { return uint64(binary.BigEndian.Uint16(p[20:])) }

func newTestFQ(t *testing.T, cfg FQConfig) (*FQ, *int) {
	t.Helper()
	if cfg.Flow == nil {
		cfg.Flow = portFlow
	}
	released := new(int)
	cfg.Release = func([]byte) { *released++ }
	f, err := NewFQ(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return f, released
}

// A sparse flow (a ping) goes before a bulk flow's backlog: it waits for
// one dequeue opportunity, not for the download queued ahead of it.
func TestFQSparseFlowFirst(t *testing.T) {
	f, _ := newTestFQ(t, FQConfig{Config: Config{Target: time.Second, Interval: 2 * time.Second}, Flows: 64})
	now := time.Unix(0, 0)
	for i := range 100 {
		f.Push(ipPacket(hostB, hostA, 80, 40000, 1400), now.Add(time.Duration(i)))
	}
	// The bulk flow has had its turns and runs on its old-list deficit.
	for range 3 {
		if _, _, ok := f.PopIf(now, nil); !ok {
			t.Fatal("bulk flow empty")
		}
	}
	ping := ipPacket(hostB, hostA, 0, 0, 84)
	ping[9] = 1 // ICMP
	f.Push(ping, now)
	if head, _ := f.Peek(); len(head) != 84 {
		t.Fatalf("Peek shows a %d-byte packet, want the ping", len(head))
	}
	p, _, ok := f.PopIf(now, nil)
	if !ok || len(p) != 84 {
		t.Fatalf("the packet after the ping arrived is %d bytes, want the ping's 84", len(p))
	}
	if f.Len() != 97 || f.Bytes() != 97*1400 {
		t.Fatalf("Len %d Bytes %d after 4 pops of 101", f.Len(), f.Bytes())
	}
}

// Two bulk flows share the opportunities by bytes (deficit round robin),
// whatever their packet sizes.
func TestFQByteFairness(t *testing.T) {
	f, _ := newTestFQ(t, FQConfig{Config: Config{Target: time.Hour, Interval: 2 * time.Hour, MaxPackets: 10000, MaxBytes: 1 << 24}, Flows: 64})
	now := time.Unix(0, 0)
	for range 2000 {
		f.Push(ipPacket(hostA, hostB, 1, 1, 1400), now)
		f.Push(ipPacket(hostA, hostB, 2, 2, 200), now)
		f.Push(ipPacket(hostA, hostB, 2, 2, 200), now)
	}
	bytes := map[int]int{}
	for range 1000 {
		p, _, ok := f.PopIf(now, nil)
		if !ok {
			t.Fatal("ran empty")
		}
		bytes[len(p)] += len(p)
	}
	big, small := float64(bytes[1400]), float64(bytes[200])
	if r := big / small; r < 0.8 || r > 1.25 {
		t.Fatalf("bulk flows got %v and %v bytes (ratio %.2f), want about equal", big, small, r)
	}
}

// Each flow has its own CoDel: a standing queue in one flow is dropped at,
// while a flow whose packets do not wait is never dropped.
func TestFQCoDelPerFlow(t *testing.T) {
	f, released := newTestFQ(t, FQConfig{Config: Config{Target: 5 * time.Millisecond, Interval: 100 * time.Millisecond}, Flows: 64})
	now := time.Unix(0, 0)
	light := ipPacket(hostA, hostB, 9, 9, 100)
	for i := range 4000 {
		t := now.Add(time.Duration(i) * time.Millisecond)
		f.Push(ipPacket(hostA, hostB, 1, 1, 1000), t)
		f.Push(ipPacket(hostA, hostB, 1, 1, 1000), t)
		if i%10 == 0 {
			f.Push(light, t)
		}
		f.PopIf(t, nil)
		f.PopIf(t, nil)
	}
	lightFlow := &f.flows[portFlow(light)%uint64(len(f.flows))]
	if lightFlow.q.stats.Sojourn != 0 {
		t.Fatalf("the light flow lost %d packets", lightFlow.q.stats.Sojourn)
	}
	if s := f.Stats(); s.Sojourn == 0 || uint64(*released) != s.Sojourn {
		t.Fatalf("bulk flow: %d sojourn drops, %d released", s.Sojourn, *released)
	}
}

// Over the hard limits the fattest flow pays: a new flow's packet goes in,
// the bulk flow loses its head.
func TestFQOverloadDropsFattest(t *testing.T) {
	f, released := newTestFQ(t, FQConfig{Config: Config{MaxPackets: 10, MaxBytes: 1 << 20}, Flows: 64})
	now := time.Unix(0, 0)
	for range 10 {
		f.Push(ipPacket(hostA, hostB, 1, 1, 1000), now)
	}
	if !f.Push(ipPacket(hostA, hostB, 2, 2, 60), now) {
		t.Fatal("the new flow's packet was refused")
	}
	if f.Len() != 10 || *released != 1 || f.Stats().Full != 1 {
		t.Fatalf("Len %d, released %d, Full %d; want 10, 1, 1", f.Len(), *released, f.Stats().Full)
	}
	found := false
	for range 10 {
		p, _, ok := f.PopIf(now, nil)
		found = found || (ok && len(p) == 60)
	}
	if !found {
		t.Fatal("the new flow's packet did not come out")
	}
	if f.Push(make([]byte, 2<<20), now) {
		t.Fatal("a packet over MaxBytes alone was accepted")
	}
}

// A head that does not fit stays at the head of its flow and goes first
// next time.
func TestFQPopIfKeepsTurn(t *testing.T) {
	f, _ := newTestFQ(t, FQConfig{})
	now := time.Unix(0, 0)
	f.Push(ipPacket(hostA, hostB, 1, 1, 1000), now)
	f.Push(ipPacket(hostA, hostB, 2, 2, 100), now)
	if _, _, ok := f.PopIf(now, func(n int) bool { return n < 500 }); ok {
		t.Fatal("PopIf skipped the flow whose turn it was")
	}
	if p, _, ok := f.PopIf(now, nil); !ok || len(p) != 1000 {
		t.Fatalf("got %d bytes, want the 1000-byte head back", len(p))
	}
}

// Len, Bytes and the Release count agree with what went in and came out,
// under random operations.
func TestFQAccounting(t *testing.T) {
	f, released := newTestFQ(t, FQConfig{Config: Config{Target: 2 * time.Millisecond, Interval: 20 * time.Millisecond, MaxPackets: 50, MaxBytes: 40000}, Flows: 8})
	rnd := rand.New(rand.NewPCG(1, 2))
	now := time.Unix(0, 0)
	in, inBytes, out, outBytes := 0, 0, 0, 0
	for range 20000 {
		now = now.Add(time.Duration(rnd.IntN(3)) * time.Millisecond)
		switch rnd.IntN(4) {
		case 0, 1:
			p := ipPacket(hostA, hostB, uint16(rnd.IntN(20)), 1, 28+rnd.IntN(1400))
			in++
			inBytes += len(p)
			f.Push(p, now)
		case 2:
			if p, _, ok := f.PopIf(now, func(n int) bool { return n < 1000 }); ok {
				out++
				outBytes += len(p)
			}
		case 3:
			if rnd.IntN(500) == 0 {
				f.Reset()
			}
		}
		if f.Len()+out+*released != in {
			t.Fatalf("Len %d + out %d + released %d != in %d", f.Len(), out, *released, in)
		}
		if f.Len() > 50 || f.Bytes() > 40000 {
			t.Fatalf("over the limits: %d packets, %d bytes", f.Len(), f.Bytes())
		}
	}
	f.Reset()
	if f.Len() != 0 || f.Bytes() != 0 {
		t.Fatal("Reset left packets")
	}
	if _, ok := f.Peek(); ok {
		t.Fatal("Peek found a packet after Reset")
	}
}
