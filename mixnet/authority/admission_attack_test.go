package authority

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nym-go/nym/mixnet/directory"
)

// The Sybil attacks of issue 12, each as an attacker would run it against
// one authority: real sockets, real keys, real Noise listeners.

// postFrom posts a signed descriptor to the authority at url from source
// address src (a loopback address; "" lets the kernel choose) and returns
// the status and body.
func postFrom(t testing.TB, url, src string, sd directory.SignedDescriptor) (int, string) {
	t.Helper()
	body, err := json.Marshal(sd)
	if err != nil {
		t.Fatal(err)
	}
	d := &net.Dialer{}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	c := &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
	resp, err := c.Post(url+directory.PathNodes, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data)
}

// seatsOf counts how many of nodes hold a role other than standby.
func seatsOf(top *directory.Topology, nodes []*testNode) int {
	n := 0
	for _, nd := range nodes {
		if role, _ := top.RoleOf(nd.id()); role != directory.RoleNone && role != directory.RoleStandby {
			n++
		}
	}
	return n
}

// honestNetwork is one entry, one exit and five mixes, each in its own
// /24 (127.0.10.1, 127.0.11.1, ...), as independent operators are.
func honestNetwork(t *testing.T) []*testNode {
	caps := []directory.Capabilities{entryGW, {Exit: true}, mixOnly, mixOnly, mixOnly, mixOnly, mixOnly}
	var nodes []*testNode
	for i, c := range caps {
		nodes = append(nodes, newTestNodeAt(t, c, fmt.Sprintf("127.0.%d.1", 10+i)))
	}
	return nodes
}

// register posts each node's descriptor over HTTP and fails the test on
// any refusal.
func register(t *testing.T, url string, s *Server, nodes ...*testNode) {
	t.Helper()
	for _, n := range nodes {
		if status, body := postFrom(t, url, "", n.signed(t, s.cfg.Now())); status != http.StatusOK {
			t.Fatalf("honest node %s refused: %d %s", n.id(), status, body)
		}
	}
}

// settle runs the probes a node needs for a role and turns the epoch.
func settle(t *testing.T, s *Server, clock *fakeClock) *directory.Topology {
	t.Helper()
	probeTwice(t, s)
	nextEpoch(s, clock)
	return s.Topology()
}

func requireSeated(t *testing.T, top *directory.Topology, nodes []*testNode) {
	t.Helper()
	if got := seatsOf(top, nodes); got != len(nodes) {
		t.Fatalf("%d of %d honest nodes hold a seat", got, len(nodes))
	}
}

// TestSybilRangeTakesBoundedSeats: 30 mixnodes and 5 exits from one
// operator's /24 (ten addresses in 127.0.99.0/24, each node a real Noise
// listener) register in one go next to seven honest nodes in seven /24s.
// On the old code they took 25 of 30 mix seats and 5 of 6 exits; with the
// default per-address (2) and per-/24 (4) limits the range holds at most 4
// seats and every honest node keeps its seat.
func TestSybilRangeTakesBoundedSeats(t *testing.T) {
	s, clock := newTestServerDefaults(t, Config{Limits: Limits{LayerSize: 10, MaxExits: 6, MaxEntries: 6}})
	ts := httptest.NewServer(s)
	defer ts.Close()
	honest := honestNetwork(t)
	register(t, ts.URL, s, honest...)
	var sybils []*testNode
	for i := range 35 {
		caps := mixOnly
		if i >= 30 {
			caps = directory.Capabilities{Exit: true}
		}
		sybils = append(sybils, newTestNodeAt(t, caps, fmt.Sprintf("127.0.99.%d", 1+i%10)))
	}
	for _, n := range sybils {
		postFrom(t, ts.URL, "", n.signed(t, s.cfg.Now())) // refusals are the point
	}
	top := settle(t, s, clock)
	if got := seatsOf(top, sybils); got > 4 {
		t.Errorf("35 nodes from one /24 hold %d seats; the limit is 4", got)
	}
	requireSeated(t, top, honest)
}

// TestForeignHealthEndpointTakesNoSeat: nodes that run nothing of their own
// announce someone else's health endpoint (the authority's own API, which
// answers 200 on the same path, and an honest node's) and a mixnet address
// where no Noise listener holds their key. On the old code the borrowed
// 200s seated them.
func TestForeignHealthEndpointTakesNoSeat(t *testing.T) {
	s, clock := newTestServerDefaults(t, Config{})
	ts := httptest.NewServer(s)
	defer ts.Close()
	honest := honestNetwork(t)
	register(t, ts.URL, s, honest...)
	closed := listenOn(t, "127.0.0.1")
	deadAddr := closed.Addr().String()
	closed.Close()
	var fakes []*testNode
	for i, httpAddr := range []string{ts.Listener.Addr().String(), honest[2].desc.HTTPAddr, honest[3].desc.HTTPAddr} {
		f := newTestNodeAt(t, mixOnly, fmt.Sprintf("127.0.%d.1", 50+i))
		f.desc.HTTPAddr = httpAddr
		f.desc.MixnetAddr = deadAddr
		fakes = append(fakes, f)
		postFrom(t, ts.URL, "", f.signed(t, s.cfg.Now()))
	}
	top := settle(t, s, clock)
	if got := seatsOf(top, fakes); got != 0 {
		t.Errorf("%d nodes answering on someone else's health endpoint hold seats", got)
	}
	requireSeated(t, top, honest)
}

// TestClonedKeysTakeNoSeat: new identities carrying an honest node's Noise
// key and address (the handshake then reaches the honest node, which does
// hold the key), or its Sphinx keys behind a Noise listener of their own.
// On the old code the clones were seated; now each is refused, naming the
// conflict, and the first holder keeps its seat.
func TestClonedKeysTakeNoSeat(t *testing.T) {
	s, clock := newTestServerDefaults(t, Config{})
	ts := httptest.NewServer(s)
	defer ts.Close()
	honest := honestNetwork(t)
	register(t, ts.URL, s, honest...)
	victim := honest[2]

	noiseClone := newTestNodeAt(t, mixOnly, "127.0.60.1")
	noiseClone.desc.NoiseKey, noiseClone.desc.MixnetAddr = victim.desc.NoiseKey, victim.desc.MixnetAddr
	sphinxClone := newTestNodeAt(t, mixOnly, "127.0.61.1")
	sphinxClone.desc.SphinxKeys = victim.desc.SphinxKeys
	noiseOnly := newTestNodeAt(t, mixOnly, "127.0.62.1")
	noiseOnly.desc.NoiseKey = victim.desc.NoiseKey // its listener holds another key
	clones := []*testNode{noiseClone, sphinxClone, noiseOnly}
	for _, c := range clones {
		status, body := postFrom(t, ts.URL, "", c.signed(t, s.cfg.Now()))
		t.Logf("clone registration: %d %s", status, body)
	}
	top := settle(t, s, clock)
	if got := seatsOf(top, clones); got != 0 {
		t.Errorf("%d clones of %s hold seats", got, victim.id())
	}
	requireSeated(t, top, honest)
}

// TestRegistrationFloodLeavesRoomForHonest: 1 000 registrations of fresh
// identities from one source against a directory that remembers 200 nodes.
// On the old code the flood filled the cap and the honest node, coming from
// another address, was refused ("directory is full").
func TestRegistrationFloodLeavesRoomForHonest(t *testing.T) {
	s, clock := newTestServerDefaults(t, Config{MaxNodes: 200})
	ts := httptest.NewServer(s)
	defer ts.Close()
	template := newTestNodeAt(t, mixOnly, "127.0.70.1")
	var refused atomic.Int64
	for i := range 1000 {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		d := template.desc
		d.Identity = directory.Key(priv.Public().(ed25519.PublicKey))
		d.NoiseKey = newKey(t)
		d.SphinxKeys = []directory.SphinxKey{{Rotation: 0, Key: newKey(t)}, {Rotation: 1, Key: newKey(t)}}
		// Addresses of their own, so uniqueness alone does not stop them.
		d.MixnetAddr, d.HTTPAddr = fmt.Sprintf("127.0.70.1:%d", 10000+i), fmt.Sprintf("127.0.70.1:%d", 20000+i)
		d.IssuedAt = s.cfg.Now()
		sd, err := directory.SignDescriptor(priv, d)
		if err != nil {
			t.Fatal(err)
		}
		if status, _ := postFrom(t, ts.URL, "127.0.0.1", sd); status != http.StatusOK {
			refused.Add(1)
		}
	}
	t.Logf("flood: %d of 1000 refused", refused.Load())
	honest := honestNetwork(t)
	for _, n := range honest {
		if status, body := postFrom(t, ts.URL, "127.0.0.2", n.signed(t, s.cfg.Now())); status != http.StatusOK {
			t.Fatalf("honest registration after the flood: %d %s", status, body)
		}
	}
	requireSeated(t, settle(t, s, clock), honest)
}

// TestProbesNotAimedAtNamedHosts: a registrant names a victim's HTTP
// service as its health endpoint, and as its mixnet address, with no Noise
// listener of its own. On the old code the authority sent the victim an
// HTTP GET every probe round: a blind reflector anyone could aim. Now the
// authority speaks HTTP only to a host that first completed a Noise
// handshake with the announced key.
func TestProbesNotAimedAtNamedHosts(t *testing.T) {
	s, clock := newTestServerDefaults(t, Config{})
	var hits atomic.Int64
	victim := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.WriteString(w, "ok")
	}))
	defer victim.Close()
	ts := httptest.NewServer(s)
	defer ts.Close()
	closed := listenOn(t, "127.0.0.1")
	deadAddr := closed.Addr().String()
	closed.Close()

	aimHTTP := newTestNode(t, mixOnly)
	aimHTTP.desc.HTTPAddr, aimHTTP.desc.MixnetAddr = victim.Listener.Addr().String(), deadAddr
	aimBoth := newTestNode(t, mixOnly)
	aimBoth.desc.HTTPAddr, aimBoth.desc.MixnetAddr = victim.Listener.Addr().String(), victim.Listener.Addr().String()
	for _, n := range []*testNode{aimHTTP, aimBoth} {
		postFrom(t, ts.URL, "", n.signed(t, s.cfg.Now()))
	}
	for range 3 {
		s.probeRound(context.Background(), nil)
		clock.Advance(time.Second)
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the authority sent %d HTTP requests to a host no node proved it answers on", n)
	}
}
