package exit

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/nym-go/nym/internal/poll"
	"github.com/nym-go/nym/internal/testexit"
	"github.com/nym-go/nym/internal/testnet"
	"github.com/nym-go/nym/ipr"
	"github.com/nym-go/nym/mixnet/client"
)

// floodLab is an exit router over a real in-process mixnet and an honest
// VPN client, each a mixnet client of its own.
type floodLab struct {
	net    *testnet.Net
	exit   *testexit.Exit
	to     client.Address
	honest *client.Client
}

func newFloodLab(t *testing.T) *floodLab {
	t.Helper()
	n := testnet.Start(t, testnet.Options{})
	e := testexit.Start(t, n, nil, floodLoopix, netip.MustParseAddr("192.0.2.1"))
	return &floodLab{net: n, exit: e, to: e.Client.Address(), honest: testexit.Connect(t, n, client.Config{Loopix: &floodLoopix})}
}

// floodLoopix: no mixing delay, so the round trip is the router's doing.
var floodLoopix = client.Loopix{}

// attack is the attacker of issue 10. Its first Ping carries two SURBs: the
// exit answers with one and, its supply for the tag now low, spends the
// other asking for more. The attacker never grants them (its client is
// gone when the request arrives), so for the exit's retry interval every
// reply to the tag waits for SURBs that never come, and the attacker sends
// n SURB-less Pings to be answered.
func (l *floodLab) attack(t *testing.T, ctx context.Context, n int) {
	t.Helper()
	a := testexit.Connect(t, l.net, client.Config{Loopix: &floodLoopix})
	ping, _ := ipr.MarshalRequest(&ipr.Ping{ID: 1})
	if err := a.SendRepliablePacket(ctx, l.to, ping, 2); err != nil {
		t.Fatal(err)
	}
	for range n {
		// Acknowledged sends, so that Flush knows when all have reached
		// the exit's gateway.
		if err := a.SendWithReplySURBs(ctx, l.to, ping, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	a.Close() // answers nothing from now on
}

// ping sends the honest client's Ping and returns the round trip.
func (l *floodLab) ping(t *testing.T, ctx context.Context, id uint64) time.Duration {
	t.Helper()
	msg, _ := ipr.MarshalRequest(&ipr.Ping{ID: id})
	start := time.Now()
	if err := l.honest.SendRepliablePacket(ctx, l.to, msg, 1); err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case <-ctx.Done():
			t.Fatalf("no Pong %d: %v", id, ctx.Err())
		case m := <-l.honest.Receive():
			if r, err := ipr.ParseResponse(m.Data); err == nil {
				if p, ok := r.(*ipr.Pong); ok && p.ID == id {
					return time.Since(start)
				}
			}
		}
	}
}

// The attack of issue 10: one sender's SURB-less Pings, each of whose
// answers waited for SURBs on the exit's only request goroutine, stalled
// every user. Now the sender's first reply waits on a worker of its own
// (its top-up could have been on the way), and once that failed the rest are
// dropped and counted. The honest Ping, sent after the flood, is answered
// while that first reply still waits: no reply to the attacker has timed
// out yet (the test exit waits 5 s). Before the fix the honest Pong came
// only after a stuck reply to the attacker had timed out (RepliesFailed 1)
// and the flood was never counted.
func TestSURBlessFloodDoesNotStallHonestClient(t *testing.T) {
	l := newFloodLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const flood = 50
	l.attack(t, ctx, flood)
	l.ping(t, ctx, 7)
	if st := l.exit.Router.Stats(); st.RepliesFailed != 0 {
		t.Fatalf("the honest Pong came after %d stuck replies to the attacker timed out", st.RepliesFailed)
	}
	poll.Until(t, 30*time.Second, "the flood to be dropped and counted", func() bool {
		return l.exit.Router.Stats().RequestsNoSURB == flood-1
	})
}

// TestTimingSURBlessFloodRTT measures the honest client's Ping round trip
// right after an attacker's SURB-less flood, over several floods (a new
// attacker each): within 2x of the idle round trip. Before the fix the Ping
// after each flood waited for the stuck replies to time out (seconds: some
// 300x the idle round trip with the service's 1 s timeout). A timing test:
// the Makefile runs it apart, and it skips under the race detector.
func TestTimingSURBlessFloodRTT(t *testing.T) {
	if raceEnabled {
		t.Skip("timing test: meaningless under the race detector")
	}
	if testing.Short() {
		t.Skip("timing test: skipped with -short")
	}
	l := newFloodLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 240*time.Second)
	defer cancel()
	id := uint64(100)
	median := func(rtts []time.Duration) time.Duration {
		slices.Sort(rtts)
		return rtts[len(rtts)/2]
	}
	var idle, loaded []time.Duration
	for range 5 { // warm up: routes, keys, SURB stores
		id++
		l.ping(t, ctx, id)
	}
	for range 21 {
		id++
		idle = append(idle, l.ping(t, ctx, id))
	}
	const rounds, flood = 7, 50
	for range rounds {
		// The honest Ping goes once the flood has crossed the mixnet, so
		// that it measures the router, not the mix nodes' queues.
		before := l.exit.Client.Stats().MessagesReceived
		l.attack(t, ctx, flood)
		poll.Until(t, 30*time.Second, "the flood to reach the exit", func() bool {
			return l.exit.Client.Stats().MessagesReceived >= before+flood+1
		})
		id++
		loaded = append(loaded, l.ping(t, ctx, id))
	}
	i, f := median(idle), median(loaded)
	t.Logf("honest Ping RTT: idle %v, right after a SURB-less flood %v (median of %d floods; %d flood requests dropped)",
		i, f, rounds, l.exit.Router.Stats().RequestsNoSURB)
	// A millisecond of slack: at idle round trips of a few ms, scheduling
	// noise alone is of that order.
	if f > 2*i+time.Millisecond {
		t.Errorf("RTT after a flood %v, more than twice the idle %v", f, i)
	}
}
