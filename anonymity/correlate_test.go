package anonymity

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// flowTrace makes n clients behind gateway gw, each owning exit flow
// 1000+i, over the given number of one-second windows. Each client's
// traffic is bursty (a random number of packets per window). If linked,
// the exit side repeats the client's packets 150-400 ms later (upstream)
// and the client receives the exit's downstream packets 150-400 ms later;
// otherwise the exit side draws its own, independent traffic.
func flowTrace(rng *rand.Rand, n, windows int, linked bool) []Record {
	const exit = exitNode
	sec := int64(time.Second)
	delay := func() int64 { return 150*int64(time.Millisecond) + rng.Int64N(250*int64(time.Millisecond)) }
	burst := func() []int64 {
		var ts []int64
		for w := range windows {
			for range rng.IntN(12) * rng.IntN(2) { // on/off
				ts = append(ts, int64(w)*sec+rng.Int64N(sec))
			}
		}
		return ts
	}
	var recs []Record
	add := func(t int64, node NodeID, role Role, dir Dir, peer, owner NodeID) {
		recs = append(recs, Record{Event{Time: t, Node: node, Peer: peer, Size: 2048, Role: role, PeerRole: testRole(peer), Dir: dir}, Truth{Sender: owner}})
	}
	for i := range n {
		c, f := NodeID(100+i), NodeID(1000+i)
		// Upstream from the client's link to the exit's, downstream the
		// other way round.
		for _, h := range []struct {
			from, to         NodeID
			fromRole, toRole Role
			fromDir, toDir   Dir
			fromPeer, toPeer NodeID
		}{
			{gw, exit, RoleGateway, RoleExit, In, Out, c, f},
			{exit, gw, RoleExit, RoleGateway, In, Out, f, c},
		} {
			sent := burst()
			for _, t := range sent {
				add(t, h.from, h.fromRole, h.fromDir, h.fromPeer, c)
			}
			if !linked {
				sent = burst()
			}
			for _, t := range sent {
				add(t+delay(), h.to, h.toRole, h.toDir, h.toPeer, c)
			}
		}
	}
	// The exit's own gateway link: not a candidate client.
	add(0, gw, RoleGateway, In, exit, exit)
	return recs
}

func TestCorrelateLinkedFlows(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	recs := flowTrace(rng, 10, 60, true)
	for _, dir := range []FlowDir{Upstream, Downstream} {
		c, err := CorrelateFlows(Events(recs), dir, CorrelationConfig{})
		if err != nil {
			t.Fatal(err)
		}
		a := Score(c, FlowOwners(recs))
		if c.Clients != 10 || a.Total != 10 || a.Correct != 10 || a.Chance != 0.1 {
			t.Errorf("direction %d: %+v (clients %d), want 10 of 10 beside chance 0.1", dir, a, c.Clients)
		}
	}
}

// TestCorrelateIndependentFlows: with the exit side unrelated to the
// clients, the attacker is at chance: over 30 networks of 10 the 95%
// interval holds 1/10 and the rate is far from the linked case. The same
// for the span attacker, which must not find links that are not there.
func TestCorrelateIndependentFlows(t *testing.T) {
	for _, span := range []bool{false, true} {
		rng := rand.New(rand.NewPCG(3, 4))
		for _, dir := range []FlowDir{Upstream, Downstream} {
			all := pooledWith(t, 30, dir, CorrelationConfig{Span: span}, func() []Record { return flowTrace(rng, 10, 60, false) })
			lo, hi := all.Low, all.High
			t.Logf("span %v, direction %d: %d of %d correct, 95%% interval [%.3f, %.3f]", span, dir, all.Correct, all.Total, lo, hi)
			if all.Total != 300 || lo > 0.1 || hi < 0.1 {
				t.Errorf("span %v, direction %d: %d of %d correct, interval [%.3f, %.3f] misses chance 0.1", span, dir, all.Correct, all.Total, lo, hi)
			}
		}
	}
}

// pooled runs the attacker on runs traces from gen and pools its score.
func pooled(t *testing.T, runs int, dir FlowDir, gen func() []Record) Accuracy {
	t.Helper()
	return pooledWith(t, runs, dir, CorrelationConfig{}, gen)
}

// pooledWith is pooled with the attacker's configuration.
func pooledWith(t *testing.T, runs int, dir FlowDir, cfg CorrelationConfig, gen func() []Record) Accuracy {
	t.Helper()
	var all Accuracy
	for range runs {
		recs := gen()
		c, err := CorrelateFlows(Events(recs), dir, cfg)
		if err != nil {
			t.Fatal(err)
		}
		a := Score(c, FlowOwners(recs))
		all.Correct += a.Correct
		all.Total += a.Total
	}
	all.Low, all.High = Wilson(all.Correct, all.Total, 1.96)
	return all
}

func TestWilson(t *testing.T) {
	for _, c := range []struct {
		k, n   int
		lo, hi float64
	}{
		{0, 10, 0, 0.2775},
		{5, 10, 0.2366, 0.7634},
		{10, 10, 0.7225, 1},
		{0, 0, 0, 1},
	} {
		lo, hi := Wilson(c.k, c.n, 1.96)
		if math.Abs(lo-c.lo) > 5e-4 || math.Abs(hi-c.hi) > 5e-4 {
			t.Errorf("Wilson(%d, %d) = [%.4f, %.4f], want [%.4f, %.4f]", c.k, c.n, lo, hi, c.lo, c.hi)
		}
	}
}

func TestCorrelationConfigDefaults(t *testing.T) {
	c, err := CorrelationConfig{}.withDefaults()
	if err != nil || c.Window != time.Second || c.MaxLag != 3 {
		t.Errorf("defaults %+v, %v", c, err)
	}
	if _, err := (CorrelationConfig{MaxLag: -1}).withDefaults(); err == nil {
		t.Error("negative lag accepted")
	}
	if _, err := CorrelateFlows(nil, 0, CorrelationConfig{}); err == nil {
		t.Error("direction 0 accepted")
	}
	// A client silent upstream is still a candidate there.
	cr, err := CorrelateFlows([]Event{
		{Time: 1, Node: gw, Peer: 1, Role: RoleGateway, PeerRole: RoleClient, Dir: In},
		{Time: 2, Node: gw, Peer: 2, Role: RoleGateway, PeerRole: RoleClient, Dir: Out},
		{Time: 3, Node: exitNode, Peer: 1000, Role: RoleExit, PeerRole: RoleHost, Dir: Out},
	}, Upstream, CorrelationConfig{})
	if err != nil || cr.Clients != 2 || len(cr.Matches) != 1 {
		t.Errorf("%+v, %v: want 2 candidates and 1 match", cr, err)
	}
	// A damaged trace spanning all of int64 time: an error, not an
	// overflow or a huge allocation.
	ev := []Event{
		{Time: math.MinInt64, Node: gw, Peer: 1, Role: RoleGateway, PeerRole: RoleClient, Dir: In},
		{Time: math.MaxInt64, Node: exitNode, Peer: 1000, Role: RoleExit, PeerRole: RoleHost, Dir: Out},
	}
	if _, err := CorrelateFlows(ev, Upstream, CorrelationConfig{}); err == nil {
		t.Error("trace of 2^64 ns accepted")
	}
}

// BenchmarkCorrelateFlows: the attacker on ten minutes of ten Loopix
// clients' upstream.
func BenchmarkCorrelateFlows(b *testing.B) {
	ev := Events(coverTrace(rand.New(rand.NewPCG(1, 1)), 10, 600, slots))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := CorrelateFlows(ev, Upstream, CorrelationConfig{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(ev))*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// TestCorrelateSpan: client A owns a short flow (windows 10-19, a
// distinct pattern) and, much later, a heavy download on another flow;
// client B is quiet but for a burst that overlaps the short flow's second
// half. Over the whole trace A's download swamps the short flow and B
// wins it; over the flow's span A's pattern matches exactly.
func TestCorrelateSpan(t *testing.T) {
	const a, b = NodeID(100), NodeID(101)
	const short, heavy = NodeID(1000), NodeID(1001)
	sec := int64(time.Second)
	var recs []Record
	add := func(w int, n int, node NodeID, role Role, dir Dir, peer, owner NodeID) {
		for k := range n {
			tm := int64(w)*sec + int64(k)*sec/int64(n+1)
			recs = append(recs, Record{Event{Time: tm, Node: node, Peer: peer, Size: 2048, Role: role, PeerRole: testRole(peer), Dir: dir}, Truth{Sender: owner}})
		}
	}
	pattern := []int{1, 5, 2, 8, 1, 6, 3, 9, 2, 7}
	for i, n := range pattern {
		add(10+i, n, gw, RoleGateway, In, a, a)
		add(10+i, n, exitNode, RoleExit, Out, short, a)
	}
	for w := 100; w < 160; w++ {
		add(w, 40+w%7, gw, RoleGateway, In, a, a)
		add(w, 40+w%7, exitNode, RoleExit, Out, heavy, a)
	}
	for w := 15; w < 20; w++ {
		add(w, 3, gw, RoleGateway, In, b, b)
	}
	owners := FlowOwners(recs)
	for _, span := range []bool{false, true} {
		c, err := CorrelateFlows(Events(recs), Upstream, CorrelationConfig{Span: span})
		if err != nil {
			t.Fatal(err)
		}
		var got NodeID
		for _, m := range c.Matches {
			if m.Flow == short {
				got = m.Client
			}
		}
		if want := map[bool]NodeID{false: b, true: a}[span]; got != want {
			t.Errorf("span %v: short flow matched to %d, want %d (matches %+v)", span, got, want, c.Matches)
		}
		if a := Score(c, owners); span && a.Correct != 2 {
			t.Errorf("span: %+v, want both flows matched", a)
		}
	}
}
