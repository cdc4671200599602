package exit_test

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
	// The control replies' timeout is longer than the flood takes to
	// arrive even under the race detector, so that "not yet timed out"
	// means "not waited for".
	e := testexit.StartOptions(t, n, testexit.Options{
		Loopix:         floodLoopix,
		Internet:       []netip.Addr{netip.MustParseAddr("192.0.2.1")},
		ControlTimeout: time.Minute,
	})
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
//
// With withSURBs the same client sends the same Pings each with a SURB: the
// same load on the mixnet, all of it answered, and no attack.
func (l *floodLab) attack(t *testing.T, ctx context.Context, n int, withSURBs bool) {
	t.Helper()
	a := testexit.Connect(t, l.net, client.Config{Loopix: &floodLoopix})
	ping, _ := ipr.MarshalRequest(&ipr.Ping{ID: 1})
	if err := a.SendRepliablePacket(ctx, l.to, ping, 2); err != nil {
		t.Fatal(err)
	}
	for range n {
		// Acknowledged sends, so that Flush knows when all have reached
		// the exit's gateway.
		if err := a.SendWithReplySURBs(ctx, l.to, ping, btoi(withSURBs)); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	a.Close() // answers nothing from now on
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
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
// (its top-up could have been on the way; TestRequestsWithoutSURBsDropped
// shows the rest dropped once it failed), and the honest Ping, sent once
// the flood is at the exit, is answered while that reply still waits: no
// reply to the attacker has timed out. Before the fix the honest Pong came
// only after the stuck replies to the attacker had timed out.
func TestSURBlessFloodDoesNotStallHonestClient(t *testing.T) {
	l := newFloodLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	const flood = 50
	before := l.exit.Client.Stats().MessagesReceived
	l.attack(t, ctx, flood, false)
	// The honest Ping leaves once the flood is at the exit, so that it
	// does not queue behind the flood in the mix nodes (slow under the
	// race detector) but only, if at all, in the router.
	poll.Until(t, 30*time.Second, "the flood to reach the exit", func() bool {
		return l.exit.Client.Stats().MessagesReceived >= before+flood+1
	})
	l.ping(t, ctx, 7)
	if n := l.exit.Service.Stats().ControlTimeouts; n != 0 {
		t.Fatalf("the honest Pong came after %d stuck replies to the attacker timed out", n)
	}
}

// TestTimingSURBlessFloodRTT measures the honest client's Ping round trip
// right after an attacker's SURB-less flood, over several floods (a new
// attacker each): within 2x of the round trip right after a flood of the
// same Pings that carry SURBs (the same load on the mixnet: the exit
// answers every one), and it logs the idle round trip too. Before the fix
// the Ping after each SURB-less flood waited for the stuck replies to time
// out: seconds (some 300x the idle round trip with the service's 1 s
// timeout, 4000x with the test exit's 5 s). A timing test: the Makefile
// runs it apart, and it skips under the race detector.
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
	var idle []time.Duration
	for range 5 { // warm up: routes, keys, SURB stores
		id++
		l.ping(t, ctx, id)
	}
	for range 21 {
		id++
		idle = append(idle, l.ping(t, ctx, id))
	}
	const rounds, flood = 11, 50
	afterFlood := func(withSURBs bool) time.Duration {
		var rtts []time.Duration
		for range rounds {
			// The honest Ping goes once the flood has crossed the
			// mixnet.
			before := l.exit.Client.Stats().MessagesReceived
			l.attack(t, ctx, flood, withSURBs)
			poll.Until(t, 30*time.Second, "the flood to reach the exit", func() bool {
				return l.exit.Client.Stats().MessagesReceived >= before+flood+1
			})
			id++
			rtts = append(rtts, l.ping(t, ctx, id))
		}
		return median(rtts)
	}
	benign := afterFlood(true)
	attacked := afterFlood(false)
	t.Logf("honest Ping RTT: idle %v, after a flood of Pings with SURBs %v, after a SURB-less flood %v (medians of 21, %d, %d; %d flood requests dropped)",
		median(idle), benign, attacked, rounds, rounds, l.exit.Router.Stats().RequestsNoSURB)
	// Slack of 10 ms: at round trips of a few ms on a shared two-core
	// machine, a neighbour's burst alone moves a median by that much; the
	// stall this catches is seconds.
	if attacked > 2*benign+10*time.Millisecond {
		t.Errorf("RTT after a SURB-less flood %v, more than twice that after a flood with SURBs %v", attacked, benign)
	}
}
