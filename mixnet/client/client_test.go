package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nym-go/nym/internal/leakcheck"
	"github.com/nym-go/nym/internal/poll"
	"github.com/nym-go/nym/internal/testnet"
	"github.com/nym-go/nym/mixnet/directory"
)

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func TestMessagesArriveIntact(t *testing.T) {
	leakcheck.Check(t)
	n := testnet.Start(t, testnet.Options{})
	// Nothing is lost on loopback, so resends only add load: at load 18
	// under -race the default timer (1.5 s of slack) fired for 238 of 467
	// packets and 1 MiB missed a 60 s deadline. Minutes of slack, and
	// deadlines that guard against hangs only.
	a := connect(t, n, func(c *Config) { c.Retransmit = &Retransmit{Max: 10, Multiplier: 1.5, Slack: 3 * time.Minute} })
	b := connect(t, n, nil)
	for _, size := range []int{1, 10 << 10, 1 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			msg := randomBytes(size)
			if err := a.Send(context.Background(), b.Address(), msg); err != nil {
				t.Fatal(err)
			}
			m := receive(t, b, 3*time.Minute)
			if !bytes.Equal(m.Data, msg) {
				t.Fatalf("received %d bytes, not the %d sent", len(m.Data), size)
			}
			if !m.SenderTag.IsZero() || m.IsReply {
				t.Fatalf("plain message arrived as %+v", m)
			}
			flush(t, a, 3*time.Minute)
		})
	}
	if s := a.Stats(); s.FragmentsLost != 0 || s.AcksReceived < 671 {
		t.Fatalf("sender stats %+v", s)
	}
}

// With Nym's default parameters (delays, Poisson stream, cover) a message
// still arrives, and a client that sends nothing still sends cover.
func TestNymDefaults(t *testing.T) {
	n := testnet.Start(t, testnet.Options{})
	nym := func(c *Config) {
		d := NymDefaults()
		if raceEnabled { // packets cost 6 ms to build under the race detector
			d.SendInterval, d.CoverInterval = 100*time.Millisecond, time.Second
		}
		c.Loopix = &d
	}
	a := connect(t, n, nym)
	b := connect(t, n, nym)
	msg := randomBytes(10 << 10)
	if err := a.SendWithReplySURBs(context.Background(), b.Address(), msg, 2); err != nil {
		t.Fatal(err)
	}
	m := receive(t, b, 30*time.Second)
	if !bytes.Equal(m.Data, msg) {
		t.Fatal("message differs")
	}
	if err := b.Reply(context.Background(), m.SenderTag, []byte("thanks")); err != nil {
		t.Fatal(err)
	}
	if r := receive(t, a, 30*time.Second); string(r.Data) != "thanks" || !r.IsReply {
		t.Fatalf("reply %+v", r)
	}
	waitFor(t, 10*time.Second, "loop cover to come back", func() bool { return b.Stats().CoverReceived > 5 })
}

// A reply through SURBs reaches the sender, and nothing the replier receives
// names the sender or its gateway.
func TestReplyThroughSURBs(t *testing.T) {
	n := testnet.Start(t, testnet.Options{Entries: 2, MaxEntries: 2})
	topo := n.WaitRoutable(10 * time.Second)
	// Sender and replier on different gateways, so "the replier never
	// learns the sender's gateway" means something.
	a := connect(t, n, func(c *Config) { c.Gateway = topo.Entry[0].Identity })
	var seen [][]byte
	var seenMu sync.Mutex
	b := connect(t, n, func(c *Config) {
		c.Gateway = topo.Entry[1].Identity
		c.SURBs = SURBPolicy{LowWater: 3, Request: 4}
		c.hooks = &testHooks{onMessage: func(pt []byte) {
			seenMu.Lock()
			seen = append(seen, bytes.Clone(pt))
			seenMu.Unlock()
		}}
	})

	if err := a.SendWithReplySURBs(context.Background(), b.Address(), []byte("ping"), 5); err != nil {
		t.Fatal(err)
	}
	m := receive(t, b, 30*time.Second)
	if string(m.Data) != "ping" || m.SenderTag.IsZero() {
		t.Fatalf("received %+v", m)
	}
	if !m.From.IsZero() {
		t.Fatal("a repliable message names its sender")
	}
	if got := b.surbs.count(m.SenderTag); got != 5 {
		t.Fatalf("replier holds %d SURBs, want 5", got)
	}

	// Replies use up the 5 SURBs; the replier asks for more as it runs low
	// and keeps going. One of them needs 3 SURBs.
	replies := [][]byte{[]byte("r0"), randomBytes(5000), []byte("r2"), []byte("r3"), []byte("r4"), []byte("r5"), []byte("r6")}
	for i, r := range replies {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := b.Reply(ctx, m.SenderTag, r)
		cancel()
		if err != nil {
			t.Fatalf("reply %d: %v; replier stats %+v", i, err, b.Stats())
		}
	}
	got := map[string]bool{}
	for range replies {
		r := receive(t, a, 30*time.Second)
		if !r.IsReply || r.From != b.Address() {
			t.Fatalf("reply arrived as %+v", r)
		}
		got[string(r.Data)] = true
	}
	for i, r := range replies {
		if !got[string(r)] {
			t.Fatalf("reply %d missing", i)
		}
	}
	if s := b.Stats(); s.SURBRequestsSent == 0 {
		t.Fatalf("replier never asked for more SURBs: %+v", s)
	}

	// What the replier received: no trace of the sender's identity or
	// gateway, and the SURBs start at a layer-1 mix, not at a gateway.
	seenMu.Lock()
	defer seenMu.Unlock()
	sender := a.Address()
	for _, pt := range seen {
		if bytes.Contains(pt, sender.Identity[:]) || bytes.Contains(pt, sender.Gateway[:]) {
			t.Fatal("the replier received the sender's identity or gateway")
		}
		msg, err := parseMessage(pt)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range msg.surbs {
			if role, layer := topo.RoleOf(directory.Key(s.surb.FirstHop)); role != directory.RoleMix || layer != 1 {
				t.Fatalf("a SURB's first hop is a %v (layer %d)", role, layer)
			}
		}
	}
}

// A layer-1 mix that dies mid-transfer costs retransmissions, not the
// message: fragments whose ack is late go again on fresh routes.
func TestLayer1MixKilled(t *testing.T) {
	n := testnet.Start(t, testnet.Options{Mixnodes: 6, LayerSize: 2})
	topo := n.WaitRoutable(10 * time.Second)
	if len(topo.Layers[0]) != 2 {
		t.Fatalf("layer 1 has %d nodes, want 2", len(topo.Layers[0]))
	}
	victim := nodeIndex(t, n, topo.Layers[0][0].Identity)
	// A Poisson stream spreads the transfer over about a second, so the
	// mix dies with fragments on the way.
	interval, fragments := 2*time.Millisecond, 400
	if raceEnabled {
		interval, fragments = 30*time.Millisecond, 40
	}
	retry := func(c *Config) {
		c.Loopix = &Loopix{SendInterval: interval}
		c.Retransmit = &Retransmit{Max: 20, Multiplier: 1.5, Slack: 500 * time.Millisecond}
	}
	a := connect(t, n, retry)
	b := connect(t, n, retry)
	msg := randomBytes(fragments * FragmentCapacity)
	if err := a.Send(context.Background(), b.Address(), msg); err != nil {
		t.Fatal(err)
	}
	// Waits last while the sender's fragments go out or come back
	// acknowledged: on a busy machine the transfer is slower, not stuck.
	poll.UntilProgress(t, 20*time.Second, "a quarter of the fragments to be acknowledged",
		func() uint64 { s := a.Stats(); return s.RealPacketsSent + s.AcksReceived },
		func() bool { return a.Stats().AcksReceived > uint64(fragments/4) })
	n.StopNode(victim)
	m := receiveWhileAcked(t, b, a, time.Minute)
	if !bytes.Equal(m.Data, msg) {
		t.Fatal("message differs")
	}
	s := a.Stats()
	if s.Retransmissions == 0 {
		t.Fatalf("no retransmissions although a mix died: %+v", s)
	}
	t.Logf("retransmissions after killing layer-1 mix: %d of %d fragments", s.Retransmissions, s.AcksReceived)
}

// A client that is offline while messages arrive gets them all, in order,
// when it comes back, also when its gateway restarted in between.
func TestOfflineDelivery(t *testing.T) {
	for _, restart := range []bool{false, true} {
		t.Run(fmt.Sprintf("gateway_restart=%v", restart), func(t *testing.T) {
			n := testnet.Start(t, testnet.Options{})
			topo := n.WaitRoutable(10 * time.Second)
			id := newIdentity(t)
			b := connect(t, n, func(c *Config) { c.Identity = id })
			addr := b.Address()
			b.Close()

			a := connect(t, n, nil)
			const count = 8
			for i := range count {
				if err := a.Send(context.Background(), addr, []byte(fmt.Sprintf("message %d", i))); err != nil {
					t.Fatal(err)
				}
				// Acknowledged means stored at the gateway; waiting for it
				// fixes the order in which they are stored.
				flush(t, a, 20*time.Second)
			}
			if restart {
				gw := nodeIndex(t, n, topo.Entry[0].Identity)
				n.StopNode(gw)
				n.StartNode(gw)
				n.WaitRoutable(10 * time.Second)
			}
			b2 := connect(t, n, func(c *Config) { c.Identity = id; c.Gateway = addr.Gateway })
			if b2.Address() != addr {
				t.Fatalf("reconnected as %v, want %v", b2.Address(), addr)
			}
			for i := range count {
				m := receive(t, b2, 20*time.Second)
				if want := fmt.Sprintf("message %d", i); string(m.Data) != want {
					t.Fatalf("message %d is %q, want %q", i, m.Data, want)
				}
			}
			expectNothing(t, b2, 300*time.Millisecond)
		})
	}
}

// A client whose gateway restarts reconnects on its own and keeps working.
func TestReconnect(t *testing.T) {
	leakcheck.Check(t)
	n := testnet.Start(t, testnet.Options{})
	topo := n.WaitRoutable(10 * time.Second)
	quick := func(c *Config) { c.ReconnectMin, c.ReconnectMax = 50*time.Millisecond, 200*time.Millisecond }
	a := connect(t, n, quick)
	b := connect(t, n, quick)
	gw := nodeIndex(t, n, topo.Entry[0].Identity)
	n.StopNode(gw)
	n.StartNode(gw)
	waitFor(t, 15*time.Second, "both clients to reconnect", func() bool {
		return a.Stats().Reconnects > 0 && b.Stats().Reconnects > 0 && a.link.current() != nil && b.link.current() != nil
	})
	if err := a.Send(context.Background(), b.Address(), []byte("after restart")); err != nil {
		t.Fatal(err)
	}
	if m := receive(t, b, 30*time.Second); string(m.Data) != "after restart" {
		t.Fatalf("got %q", m.Data)
	}
}

// Messages keep arriving across epoch boundaries and key rotations: the
// client refreshes the topology at each epoch end and builds packets with
// the keys of the rotation in force.
func TestAcrossEpochs(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for several epochs")
	}
	// Short epochs, and a rotation every two: a node announces the next
	// rotation's key once it has seen the current rotation, so a rotation
	// is its slack to refresh in. A node's refresh (registrations, topology,
	// key install) took up to 6 s under -race at load 15, more than a 3 s
	// rotation: layers then emptied for want of keys. At load 15 even 4 s
	// epochs (an 8 s rotation) emptied layer 2 for minutes (BuildFailures
	// in the thousands), so the epoch grows with the machine's load.
	epoch := testnet.LoadScaled(4 * time.Second)
	t.Logf("epoch %v", epoch)
	n := testnet.Start(t, testnet.Options{EpochLength: epoch, RotationEpochs: 2})
	lp := Loopix{HopDelay: 5 * time.Millisecond, SendInterval: 20 * time.Millisecond}
	// The ack wait's slack grows with the load as the epoch does: at load
	// ~19 the default 1.5 s gave up fragments after their tenth resend.
	rt := DefaultRetransmit()
	rt.Slack = testnet.LoadScaled(rt.Slack)
	// A fragment that cannot be built (no route: a layer without a key for
	// the rotation) is tried again every buildRetryDelay, each try counted
	// as a send. At load 30-40 a layer went without a key for longer than
	// Max such tries (the epoch, scaled when the load was 15, was too short
	// for the nodes' refresh), 22 of 74 messages lost their fragments and
	// the test could not finish. The budget covers the stall the wait
	// below allows: a layer's keys may come two rotations late.
	rt.Max = max(rt.Max, int(max(time.Minute, 4*epoch)/buildRetryDelay))
	cfg := func(c *Config) { c.Loopix, c.Retransmit = &lp, &rt }
	a := connect(t, n, cfg)
	b := connect(t, n, cfg)
	first := a.routes.topo.Load()
	// Send one message every 250 ms until the sender's topology has crossed
	// two epoch boundaries and a rotation: the events, not a count of
	// messages sized to a guess of how long the epochs take to pass.
	sent := make(chan int, 1)
	errc := make(chan error, 1)
	// Three epochs' worth of messages, four times over, before the sender
	// gives up on seeing its topology move.
	limit := int(12 * epoch / (250 * time.Millisecond))
	go func() {
		for i := 0; ; i++ {
			if cur := a.routes.topo.Load(); cur.Epoch >= first.Epoch+2 && cur.Rotation > first.Rotation {
				sent <- i
				return
			}
			if i == limit {
				errc <- fmt.Errorf("topology still at epoch %d after %d messages", a.routes.topo.Load().Epoch, i)
				return
			}
			if err := a.Send(context.Background(), b.Address(), []byte(fmt.Sprint(i))); err != nil {
				errc <- err
				return
			}
			time.Sleep(250 * time.Millisecond) // pacing, to spread messages over the boundaries
		}
	}()
	// The wait lasts for as long as messages arrive or the sender's
	// fragments are acknowledged; it fails when neither has happened for
	// two rotations (a rotation whose keys came late is the longest a
	// route may be missing), and at least a minute.
	stall := max(time.Minute, 4*epoch)
	tick := time.NewTicker(stall / 10)
	defer tick.Stop()
	got := map[string]bool{}
	count := -1
	acks, lastMoved := a.Stats().AcksReceived, time.Now()
	for count < 0 || len(got) < count {
		select {
		case count = <-sent:
			continue
		case err := <-errc:
			t.Fatal(err)
		case m := <-b.Receive():
			got[string(m.Data)] = true
			lastMoved = time.Now()
		case <-tick.C:
			if n := a.Stats().AcksReceived; n != acks {
				acks, lastMoved = n, time.Now()
			} else if time.Since(lastMoved) > stall {
				t.Fatalf("no message and no ack for %v; %d of %d (-1: still sending) received; sender stats %+v", stall, len(got), count, a.Stats())
			}
		}
	}
	if len(got) != count {
		t.Fatalf("%d distinct messages of %d", len(got), count)
	}
	last := a.routes.topo.Load()
	t.Logf("%d messages across epochs %d → %d, rotations %d → %d; sender stats %+v", count, first.Epoch, last.Epoch, first.Rotation, last.Rotation, a.Stats())
}
