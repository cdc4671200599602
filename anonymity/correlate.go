package anonymity

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// FlowDir says which direction of the traffic a correlation attack watches.
type FlowDir uint8

// Directions of a flow.
const (
	// Upstream: the client's packets into its gateway against the exit's
	// packets out to the internet.
	Upstream FlowDir = iota + 1
	// Downstream: the exit's packets in from the internet against the
	// gateway's packets out to the client.
	Downstream
)

// CorrelationConfig tunes the windowed-count attacker.
type CorrelationConfig struct {
	// Window is the width of a counting window; 0 means 1 s, well above a
	// route's delay at Nym's defaults (three hops of 15 ms mean, and the
	// 20 ms Poisson send slots), so a packet's two ends mostly land in the
	// same window; the lag search covers the rest.
	Window time.Duration
	// MaxLag is how many windows the exit side may trail the client side
	// (or the client the exit, downstream); 0 means 3.
	MaxLag int
	// Span compares a flow with each client only over the flow's own
	// lifetime (its first to its last window, padded by MaxLag). Over the
	// whole trace the owner's other flows count against it, and a client
	// idle but for one coincident burst can win; within the span they
	// weigh less. Neither attacker dominates the other, so an evaluation
	// runs both.
	Span bool
}

func (c CorrelationConfig) withDefaults() (CorrelationConfig, error) {
	if c.Window < 0 || c.MaxLag < 0 {
		return c, fmt.Errorf("anonymity: window %v and lag %d must not be negative", c.Window, c.MaxLag)
	}
	if c.Window == 0 {
		c.Window = time.Second
	}
	if c.MaxLag == 0 {
		c.MaxLag = 3
	}
	return c, nil
}

// maxWindows bounds a series' length, so a damaged trace (or a tiny
// window) is an error, not an allocation of gigabytes: a day at 100 ms.
const maxWindows = 1 << 20

// Match is the attacker's guess for one exit-side flow.
type Match struct {
	Flow   NodeID  // the exit-side flow (its Peer at the exit)
	Client NodeID  // the client guessed to own it
	Score  float64 // Pearson correlation at the best lag
	Lag    int     // windows by which the later side trails
}

// Correlation is the windowed-count attacker's result.
type Correlation struct {
	Clients int     // candidates: chance is 1/Clients
	Matches []Match // one per exit-side flow, in flow id order
}

// CorrelateFlows is a windowed-count flow-correlation attacker. It sees each
// client's link to its gateway (recorded at the gateway end) and the exit's
// internet side, counts packets per window on each, and matches every
// exit-side flow to the client whose series has the highest Pearson
// correlation with it, searching lags of 0..MaxLag windows in the direction
// of causality. It uses only the observer's events.
func CorrelateFlows(events []Event, dir FlowDir, cfg CorrelationConfig) (Correlation, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return Correlation{}, err
	}
	if dir != Upstream && dir != Downstream {
		return Correlation{}, fmt.Errorf("anonymity: flow direction %d", dir)
	}
	clientDir, flowDir := In, Out // upstream: gateway In from the client, exit Out
	if dir == Downstream {
		clientDir, flowDir = Out, In
	}

	type key struct {
		client bool
		id     NodeID
	}
	times := make(map[key][]int64)
	var t0, t1 int64 = math.MaxInt64, math.MinInt64
	for _, e := range events {
		var k key
		switch {
		case e.Role == RoleGateway && e.PeerRole == RoleClient:
			// (The exit's own mixnet client, RoleExit, is no candidate.)
			k = key{true, e.Peer}
			if e.Dir != clientDir {
				// Still a candidate, silent in this direction: chance
				// counts it.
				if _, ok := times[k]; !ok {
					times[k] = nil
				}
				continue
			}
		case e.Role == RoleExit && e.Dir == flowDir:
			k = key{false, e.Peer}
		default:
			continue
		}
		times[k] = append(times[k], e.Time)
		t0, t1 = min(t0, e.Time), max(t1, e.Time)
	}
	var clients, flows []NodeID
	for k := range times {
		if k.client {
			clients = append(clients, k.id)
		} else {
			flows = append(flows, k.id)
		}
	}
	slices.Sort(clients)
	slices.Sort(flows)
	res := Correlation{Clients: len(clients)}
	if len(clients) == 0 || len(flows) == 0 {
		return res, nil
	}

	// Unsigned differences: t1−t0 can exceed the int64 range in a damaged
	// trace, never the uint64 one.
	w := uint64(cfg.Window)
	span := (uint64(t1) - uint64(t0)) / w
	if span >= maxWindows {
		return Correlation{}, fmt.Errorf("anonymity: trace spans %d windows of %v, more than %d", span, cfg.Window, maxWindows)
	}
	nw := int(span) + 1
	series := func(ts []int64) []float64 {
		s := make([]float64, nw)
		for _, t := range ts {
			s[(uint64(t)-uint64(t0))/w]++
		}
		return s
	}
	cs := make([][]float64, len(clients))
	for i, c := range clients {
		cs[i] = series(times[key{true, c}])
	}
	for _, f := range flows {
		fs := series(times[key{false, f}])
		lo, hi := 0, nw
		if cfg.Span {
			lo, hi = activeSpan(fs, cfg.MaxLag)
		}
		best := Match{Flow: f, Score: math.Inf(-1)}
		for i, c := range cs {
			lead, follow := c[lo:hi], fs[lo:hi] // upstream: the exit trails the client
			if dir == Downstream {
				lead, follow = follow, lead
			}
			n := hi - lo
			for lag := 0; lag <= cfg.MaxLag && lag < n; lag++ {
				r := pearson(lead[:n-lag], follow[lag:])
				if r > best.Score {
					best.Client, best.Score, best.Lag = clients[i], r, lag
				}
			}
		}
		res.Matches = append(res.Matches, best)
	}
	return res, nil
}

// activeSpan returns the windows [lo, hi) from a series' first non-zero
// window to its last, widened by pad on each side within the series.
func activeSpan(s []float64, pad int) (lo, hi int) {
	first, last := -1, -1
	for i, v := range s {
		if v != 0 {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first < 0 {
		return 0, len(s)
	}
	return max(0, first-pad), min(len(s), last+pad+1)
}

// pearson is the correlation coefficient of x and y (equal lengths); 0 when
// either is constant, where it is undefined: a flat series says nothing.
func pearson(x, y []float64) float64 {
	n := float64(len(x))
	if n < 2 {
		return 0
	}
	var sx, sy float64
	for i := range x {
		sx += x[i]
		sy += y[i]
	}
	mx, my := sx/n, sy/n
	var sxy, sxx, syy float64
	for i := range x {
		dx, dy := x[i]-mx, y[i]-my
		sxy += dx * dy
		sxx += dx * dx
		syy += dy * dy
	}
	if sxx == 0 || syy == 0 {
		return 0
	}
	return sxy / math.Sqrt(sxx*syy)
}

// FlowOwners maps each exit-side flow to the client that owns it, from the
// ground truth of the exit's records. For scoring only.
func FlowOwners(records []Record) map[NodeID]NodeID {
	owners := make(map[NodeID]NodeID)
	for _, r := range records {
		if r.Role == RoleExit {
			owners[r.Peer] = r.Truth.Sender
		}
	}
	return owners
}

// Accuracy is an attack's top-1 accuracy beside chance, with its 95%
// Wilson score interval.
type Accuracy struct {
	Correct, Total int
	Rate           float64 // Correct / Total
	Chance         float64 // 1/N, a guess
	Low, High      float64 // 95% Wilson interval for Rate
}

// Score compares an attack's matches with the true owners.
func Score(c Correlation, owners map[NodeID]NodeID) Accuracy {
	var a Accuracy
	for _, m := range c.Matches {
		owner, ok := owners[m.Flow]
		if !ok {
			continue // no truth for this flow: cannot score it
		}
		a.Total++
		if owner == m.Client {
			a.Correct++
		}
	}
	if a.Total > 0 {
		a.Rate = float64(a.Correct) / float64(a.Total)
	}
	if c.Clients > 0 {
		a.Chance = 1 / float64(c.Clients)
	}
	a.Low, a.High = Wilson(a.Correct, a.Total, 1.959964)
	return a
}

// Wilson is the Wilson score interval for k successes in n trials at z
// standard deviations (1.96 for 95%). Unlike the normal approximation it
// stays inside [0, 1] and is honest at rates near 0 or 1 and small n. With
// no trials it is [0, 1].
func Wilson(k, n int, z float64) (lo, hi float64) {
	if n <= 0 {
		return 0, 1
	}
	nf := float64(n)
	p := float64(k) / nf
	z2 := z * z
	den := 1 + z2/nf
	center := (p + z2/(2*nf)) / den
	half := z / den * math.Sqrt(p*(1-p)/nf+z2/(4*nf*nf))
	return max(center-half, 0), min(center+half, 1)
}
