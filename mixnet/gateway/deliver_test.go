package gateway

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nym-go/nym/internal/leakcheck"
	"github.com/nym-go/nym/mixnet/gatewire"
	"github.com/nym-go/nym/mixnet/link"
)

// expectInOrder reads n Delivers carrying payloadN(from)…payloadN(from+n-1)
// and returns their Seqs, which must increase.
func expectInOrder(t *testing.T, c *testClient, from, n int, after uint64) []uint64 {
	t.Helper()
	seqs := make([]uint64, n)
	for i := range n {
		d := c.nextDeliver()
		if want, wantID := payloadN(from+i), id(byte(from+i)); !bytes.Equal(d.Payload, want) || d.ID != wantID {
			t.Fatalf("delivery %d: got %q id %x, want %q id %x", i, d.Payload, d.ID[:2], want, wantID[:2])
		}
		if d.Seq <= after {
			t.Fatalf("delivery %d: seq %d does not follow %d", i, d.Seq, after)
		}
		seqs[i], after = d.Seq, d.Seq
	}
	return seqs
}

// deliverN delivers payloadN(from)… to addr.
func deliverN(tg *testGateway, addr [32]byte, from, n int) {
	for i := from; i < from+n; i++ {
		tg.deliver(addr, id(byte(i)), payloadN(i))
	}
}

// waitStored waits until the client's stored count is n and every store
// operation has committed.
func waitStored(t *testing.T, tg *testGateway, addr [32]byte, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d stored messages", n), func() bool {
		st, _ := tg.Client(addr)
		cl := tg.lookup(addr)
		cl.mu.Lock()
		pending := cl.pending
		cl.mu.Unlock()
		return st.StoredMessages == n && pending == 0
	})
}

// expectNextIsMarker delivers a fresh packet and checks it is the next thing
// the client gets: anything stored would have been sent before it.
func expectNextIsMarker(t *testing.T, tg *testGateway, c *testClient) *gatewire.Deliver {
	t.Helper()
	tg.deliver(c.addr(), id(0xee), []byte("marker"))
	d := c.nextDeliver()
	if string(d.Payload) != "marker" {
		t.Fatalf("got %q before the marker: it was (re)delivered", d.Payload)
	}
	return d
}

func TestDeliverLiveToConnectedClient(t *testing.T) {
	leakcheck.Check(t)
	tg := startGateway(t, t.TempDir(), link.KeyPair{}, nil)
	c := tg.dial(link.KeyPair{}, false)
	deliverN(tg, c.addr(), 1, 3)
	expectInOrder(t, c, 1, 3, 0)
	if v := tg.metric("nym_gateway_delivered_live_total"); v != 3 {
		t.Errorf("delivered_live_total = %v, want 3", v)
	}
	if v := tg.metric("nym_gateway_stored_total"); v != 0 {
		t.Errorf("stored_total = %v, want 0: live delivery must not touch the disk", v)
	}
	st, _ := tg.Client(c.addr())
	if st.Delivered != 3 || st.BytesOut == 0 {
		t.Errorf("client counters: delivered %d, bytes out %d", st.Delivered, st.BytesOut)
	}
}

func TestPacketForUnknownAddressDropped(t *testing.T) {
	tg := startGateway(t, t.TempDir(), link.KeyPair{}, nil)
	tg.deliver([32]byte{0xde, 0xad}, id(1), []byte("nobody"))
	if v := tg.metric("nym_gateway_packets_dropped_total", "reason", "unknown_client"); v != 1 {
		t.Errorf("dropped unknown_client = %v, want 1", v)
	}
}

func TestStoredWhileOfflineDeliveredInOrderUntilConfirmed(t *testing.T) {
	leakcheck.Check(t)
	tg := startGateway(t, t.TempDir(), link.KeyPair{}, nil)
	key := newKey(t)
	c := tg.dial(key, false)
	tg.deliver(key.Public, id(0), payloadN(0))
	firstSeq := c.nextDeliver().Seq
	c.disconnect(tg)

	deliverN(tg, key.Public, 1, 5)
	waitStored(t, tg, key.Public, 5)

	// The connection drops before the client confirms: nothing is lost.
	c = tg.dial(key, false)
	seqs := expectInOrder(t, c, 1, 5, firstSeq)
	c.disconnect(tg)

	c = tg.dial(key, false)
	if again := expectInOrder(t, c, 1, 5, firstSeq); fmt.Sprint(again) != fmt.Sprint(seqs) {
		t.Fatalf("redelivered with seqs %v, first time %v", again, seqs)
	}
	c.confirm(seqs[4])
	waitStored(t, tg, key.Public, 0)
	c.disconnect(tg)

	c = tg.dial(key, false)
	if d := expectNextIsMarker(t, tg, c); d.Seq <= seqs[4] {
		t.Errorf("marker seq %d does not follow %d", d.Seq, seqs[4])
	}
	// The drain counts a delivery after sending it.
	tg.waitMetric("nym_gateway_delivered_from_store_total", 10)
	if v := tg.metric("nym_gateway_delivered_from_store_total"); v != 10 {
		t.Errorf("delivered_from_store_total = %v, want 10", v)
	}
}

func TestPacketsArrivingWhileDrainingKeepOrder(t *testing.T) {
	leakcheck.Check(t)
	tg := newGateway(t, t.TempDir(), link.KeyPair{}, nil)
	tg.drainWindow = 4
	tg.serve()
	key := newKey(t)
	tg.dial(key, true).disconnect(tg)
	deliverN(tg, key.Public, 0, 50)
	waitStored(t, tg, key.Public, 50)

	c := tg.dial(key, true)
	// More arrive while the backlog drains; they must queue behind it.
	var wg sync.WaitGroup
	wg.Go(func() { deliverN(tg, key.Public, 50, 50) })
	expectInOrder(t, c, 0, 100, 0)
	wg.Wait()
	waitStored(t, tg, key.Public, 0)
}

func TestDrainWaitsForConfirmationsAndNewPacketsQueueBehind(t *testing.T) {
	leakcheck.Check(t)
	tg := newGateway(t, t.TempDir(), link.KeyPair{}, nil)
	tg.drainWindow = 4
	tg.drainStall = waitTimeout // only confirmations open the window here
	tg.serve()
	key := newKey(t)
	tg.dial(key, false).disconnect(tg)
	deliverN(tg, key.Public, 0, 10)
	waitStored(t, tg, key.Public, 10)

	c := tg.dial(key, false)
	seqs := expectInOrder(t, c, 0, 4, 0)
	// The window is full. Packets arriving now must wait behind the
	// backlog, not jump ahead of it.
	deliverN(tg, key.Public, 10, 5)
	next := 4
	for next < 15 {
		c.confirm(seqs[len(seqs)-1])
		n := min(4, 15-next)
		seqs = expectInOrder(t, c, next, n, seqs[len(seqs)-1])
		next += n
	}
	expectNextIsMarker(t, tg, c)
}

func TestUnconfirmedBacklogStillDrains(t *testing.T) {
	leakcheck.Check(t)
	tg := newGateway(t, t.TempDir(), link.KeyPair{}, nil)
	tg.drainWindow = 8
	tg.drainStall = 20 * time.Millisecond
	tg.serve()
	key := newKey(t)
	tg.dial(key, false).disconnect(tg)
	deliverN(tg, key.Public, 0, 30)
	waitStored(t, tg, key.Public, 30)

	// A client that never confirms still gets everything, a window per
	// stall, and then live traffic; the backlog stays stored for it.
	c := tg.dial(key, false)
	expectInOrder(t, c, 0, 30, 0)
	expectNextIsMarker(t, tg, c)
	// (The marker itself may have been stored, if it came before the
	// drainer noticed the backlog was done.)
	if st, _ := tg.Client(key.Public); st.StoredMessages < 30 {
		t.Errorf("%d stored after an unconfirmed drain, want all 30 kept", st.StoredMessages)
	}
}

func TestStoredMessagesSurviveRestart(t *testing.T) {
	leakcheck.Check(t)
	dir, gwKey, key := t.TempDir(), newKey(t), newKey(t)

	tg := startGateway(t, dir, gwKey, nil)
	c := tg.dial(key, false)
	tg.deliver(key.Public, id(0), payloadN(0))
	last := c.nextDeliver().Seq
	c.disconnect(tg)
	deliverN(tg, key.Public, 1, 3)
	waitStored(t, tg, key.Public, 3)
	tg.stop()

	tg = startGateway(t, dir, gwKey, nil)
	if st, ok := tg.Client(key.Public); !ok || st.StoredMessages != 3 {
		t.Fatalf("after restart: known %v, %d stored; want 3", ok, st.StoredMessages)
	}
	c = tg.dial(key, false)
	seqs := expectInOrder(t, c, 1, 3, last)
	c.confirm(seqs[2])
	waitStored(t, tg, key.Public, 0)
	last = expectNextIsMarker(t, tg, c).Seq
	c.disconnect(tg)
	tg.stop()

	// Confirmed messages stay deleted, and numbering carries on.
	tg = startGateway(t, dir, gwKey, nil)
	c = tg.dial(key, false)
	if d := expectNextIsMarker(t, tg, c); d.Seq <= last {
		t.Errorf("seq %d after restart does not follow %d", d.Seq, last)
	}
}

func TestStoredMessagesExpire(t *testing.T) {
	leakcheck.Check(t)
	var offset atomic.Int64
	start := time.Now()
	now := func() time.Time { return start.Add(time.Duration(offset.Load())) }
	tg := startGateway(t, t.TempDir(), link.KeyPair{}, func(c *Config) {
		c.Now = now
		c.MessageTTL = time.Hour
		c.SweepInterval = 5 * time.Millisecond
	})
	key := newKey(t)
	tg.dial(key, false).disconnect(tg)

	deliverN(tg, key.Public, 1, 2)
	offset.Store(int64(30 * time.Minute))
	deliverN(tg, key.Public, 3, 1)
	waitStored(t, tg, key.Public, 3)
	offset.Store(int64(61 * time.Minute)) // the first two are now past the TTL

	tg.waitMetric("nym_gateway_expired_total", 2)
	waitStored(t, tg, key.Public, 1)
	c := tg.dial(key, false)
	expectInOrder(t, c, 3, 1, 0)
	expectNextIsMarker(t, tg, c)
}

func TestStoredBytesLimitRefusesAndTells(t *testing.T) {
	leakcheck.Check(t)
	perMessage := int64(recordHeaderLen + len(payloadN(0)))
	tg := startGateway(t, t.TempDir(), link.KeyPair{}, func(c *Config) { c.MaxStoredBytes = 3 * perMessage })
	key := newKey(t)
	tg.dial(key, false).disconnect(tg)

	deliverN(tg, key.Public, 1, 5)
	waitStored(t, tg, key.Public, 3)
	if v := tg.metric("nym_gateway_packets_dropped_total", "reason", "client_storage_full"); v != 2 {
		t.Errorf("dropped client_storage_full = %v, want 2", v)
	}

	c := tg.dial(key, false)
	st := c.nextStatus()
	if st.Code != gatewire.StatusRefused || !strings.Contains(st.Text, "2 messages") {
		t.Fatalf("status %d %q, want Refused saying 2 messages were dropped", st.Code, st.Text)
	}
	seqs := expectInOrder(t, c, 1, 3, 0)
	c.confirm(seqs[2])
	waitStored(t, tg, key.Public, 0)
	c.disconnect(tg)

	// Confirming made room again, and the drop count was reported once.
	deliverN(tg, key.Public, 4, 3)
	waitStored(t, tg, key.Public, 3)
	c = tg.dial(key, false)
	expectInOrder(t, c, 4, 3, seqs[2])
}

func TestOfflineBurstBatchesWrites(t *testing.T) {
	leakcheck.Check(t)
	dir, gwKey, key := t.TempDir(), newKey(t), newKey(t)
	tg := startGateway(t, dir, gwKey, nil)
	tg.dial(key, false).disconnect(tg)
	tg.stop()

	// Queue a burst before the writer runs, as a burst arriving faster than
	// one fsync would: it must not cost one commit per packet.
	tg = newGateway(t, dir, gwKey, nil)
	deliverN(tg, key.Public, 0, 500)
	tg.serve()
	waitStored(t, tg, key.Public, 500)
	if v := tg.metric("nym_gateway_store_commits_total"); v > 5 {
		t.Errorf("%v commits for 500 stored packets", v)
	}
	c := tg.dial(key, true)
	for i := range 500 {
		if d := c.nextDeliver(); !bytes.Equal(d.Payload, payloadN(i)) {
			t.Fatalf("delivery %d: %q", i, d.Payload)
		}
	}
}

func TestLocalServiceTakesItsPackets(t *testing.T) {
	leakcheck.Check(t)
	tg := startGateway(t, t.TempDir(), link.KeyPair{}, nil)
	c := tg.dial(link.KeyPair{}, false)

	type got struct {
		id      [16]byte
		payload []byte
	}
	ch := make(chan got, 1)
	tg.RegisterService(c.addr(), func(id [16]byte, payload []byte) { ch <- got{id, payload} })
	tg.deliver(c.addr(), id(7), []byte("for the router"))
	select {
	case g := <-ch:
		if g.id != id(7) || string(g.payload) != "for the router" {
			t.Fatalf("service got id %x payload %q", g.id[:2], g.payload)
		}
	case <-time.After(waitTimeout):
		t.Fatal("service got nothing")
	}

	// Unregistered, the address is the client's again; it never saw the
	// service's packet.
	tg.RegisterService(c.addr(), nil)
	expectNextIsMarker(t, tg, c)
}
