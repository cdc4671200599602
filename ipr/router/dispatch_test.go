package router

import (
	"sync"
	"testing"
	"time"

	"github.com/nym-go/nym/ipr"
)

// The attack: a sender floods the router with requests whose answers cannot
// leave (its SURBs are gone, so Reply waits). Every request arrives on the
// one goroutine that reads the mixnet client. An honest sender's Ping behind
// the flood must be answered while the attacker's replies are still stuck,
// not after them; the attacker's excess is dropped and counted.
//
// Before Submit the receive loop called HandleRequest, and the honest Pong
// waited behind every stuck reply (this test then timed out).
func TestSubmitSlowSenderDoesNotStallOthers(t *testing.T) {
	const attacker, honest = 0xa, 0x1
	stuck := make(chan struct{}) // the attacker's replies wait until the test ends
	defer close(stuck)
	var mu sync.Mutex
	var blocked int
	answered := make(chan ipr.Response, 1)
	e := newTestExit(t, func(c *Config) {
		c.MaxSenderRequests = 4
		c.Reply = func(key SessionKey, b []byte) error {
			if key[0] == attacker {
				mu.Lock()
				blocked++
				mu.Unlock()
				<-stuck
				return nil
			}
			resp, err := ipr.ParseResponse(b)
			if err != nil {
				t.Error(err)
				return err
			}
			answered <- resp
			return nil
		}
	})
	a, h := e.client(attacker), e.client(honest)
	ping, _ := ipr.MarshalRequest(&ipr.Ping{ID: 9})
	const flood = 100
	// The mixnet client's receive loop: one goroutine for every sender.
	deliver := e.r.Submit
	taken := make(chan int, 1)
	go func() {
		n := 0
		for range flood {
			if deliver(a.key, append([]byte(nil), ping...)) {
				n++
			}
		}
		taken <- n
		deliver(h.key, append([]byte(nil), ping...))
	}()
	select {
	case resp := <-answered:
		if p, ok := resp.(*ipr.Pong); !ok || p.ID != 9 {
			t.Fatalf("honest sender got %+v, want Pong 9", resp)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the honest Ping was not answered while the attacker's replies were stuck")
	}
	// The attacker holds one worker and at most its queue; the rest was
	// dropped at once and counted.
	accepted := <-taken
	if max := 1 + 4; accepted > max {
		t.Errorf("%d of the attacker's requests taken, want at most %d", accepted, max)
	}
	if got := e.r.Stats().RequestsDropped; got != uint64(flood-accepted) {
		t.Errorf("RequestsDropped = %d, want %d", got, flood-accepted)
	}
}

// A sender without SURBs is waited for once (its top-up may be on the
// way); when that reply fails, its Connects and Pings are dropped and
// counted, and Reply is not called for it again, so it cannot make the
// router wait for SURBs. Before, every such request ended in a Reply that
// waited for SURBs. When SURBs show up it is served again.
func TestRequestsWithoutSURBsDropped(t *testing.T) {
	const nosurb = 0xb
	var mu sync.Mutex
	hasSURBs := false
	e := newTestExit(t, func(c *Config) {
		c.CanReply = func(key SessionKey) bool {
			mu.Lock()
			defer mu.Unlock()
			return key[0] != nosurb || hasSURBs
		}
	})
	a := e.client(nosurb)
	e.mu.Lock()
	e.refuse[a.key] = true // the wait for SURBs ends without any
	e.mu.Unlock()
	a.send(&ipr.Ping{ID: 1})
	if s := e.r.Stats(); s.RepliesFailed != 1 || s.RequestsNoSURB != 0 {
		t.Fatalf("first Ping: %+v; want one failed reply", s)
	}
	a.send(&ipr.Ping{ID: 2})
	a.send(&ipr.Connect{RequestID: 2, Nonce: a.nonce})
	a.send(&ipr.DataUp{Seq: 0, Bundle: nil})
	s := e.r.Stats()
	if s.RequestsNoSURB != 3 || s.RepliesFailed != 1 || s.Sessions != 0 || e.r.cfg.Pool.InUse() != 0 {
		t.Fatalf("stats %+v, addresses in use %d; want 3 requests dropped, no reply tried, no session", s, e.r.cfg.Pool.InUse())
	}
	// Others are served as before.
	h := e.client(1)
	h.mustConnect()
	// With SURBs again, the starved sender is answered.
	mu.Lock()
	hasSURBs = true
	mu.Unlock()
	e.mu.Lock()
	e.refuse[a.key] = false
	e.mu.Unlock()
	a.send(&ipr.Ping{ID: 3})
	if p, ok := e.lastResponse(a.key).(*ipr.Pong); !ok || p.ID != 3 {
		t.Fatalf("after the top-up: %+v", p)
	}
}

// Submit keeps one sender's requests in order, and Close handles what was
// queued before it ends the sessions.
func TestSubmitOrderAndClose(t *testing.T) {
	e := newTestExit(t, nil)
	c := e.client(1)
	for i := range 20 {
		b, _ := ipr.MarshalRequest(&ipr.Ping{ID: uint64(i)})
		if !c.e.r.Submit(c.key, b) {
			t.Fatalf("Ping %d dropped", i)
		}
	}
	e.r.Close()
	rs := e.responses(c.key)
	if len(rs) != 20 {
		t.Fatalf("%d responses, want 20", len(rs))
	}
	for i, r := range rs {
		if p, ok := r.(*ipr.Pong); !ok || p.ID != uint64(i) {
			t.Fatalf("response %d is %+v", i, r)
		}
	}
	b, _ := ipr.MarshalRequest(&ipr.Ping{ID: 99})
	if e.r.Submit(c.key, b) {
		t.Fatal("Submit took a request after Close")
	}
}
