package gateway

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nym-go/nym/internal/leakcheck"
	"github.com/nym-go/nym/mixnet/gatewire"
	"github.com/nym-go/nym/mixnet/link"
	"github.com/nym-go/nym/mixnet/sphinx"
)

// sendPackets has c send n Sphinx-sized packets towards hop.
func sendPackets(c *testClient, hop byte, n int) {
	c.t.Helper()
	frame := (&gatewire.Send{FirstHop: [32]byte{hop}, Packet: randomBytes(sphinx.AckPacketSize)}).AppendBinary(nil)
	for range n {
		c.sendRaw(link.KindClient, frame)
	}
}

// TestClientFloodIsRateLimited is the attack of issue 10: one client pushed
// packets into the mixnet as fast as its link went, and the first mix layer
// dropped honest and dishonest packets alike. Its gateway now passes on at
// most its token bucket and drops the rest, while another client of the
// same gateway is unaffected. The clock stands still, so the bucket never
// refills unless the test moves it.
func TestClientFloodIsRateLimited(t *testing.T) {
	leakcheck.Check(t)
	clock := newTestClock()
	const burst, flood = 50, 2000
	tg := startGateway(t, t.TempDir(), link.KeyPair{}, func(c *Config) {
		c.Now = clock.now
		c.ClientRate = 10
		c.ClientBurst = burst
	})
	flooder := tg.dial(link.KeyPair{}, false)
	honest := tg.dial(link.KeyPair{}, false)

	sendPackets(flooder, 1, flood)
	tg.waitMetric("nym_gateway_packets_dropped_total", flood-burst, "reason", "rate_limited")
	sendPackets(honest, 2, 5)
	waitFor(t, "the honest client's packets", func() bool {
		st, _ := tg.Client(honest.addr())
		return st.Forwarded == 5
	})
	if st, _ := tg.Client(flooder.addr()); st.Forwarded != burst {
		t.Errorf("flooder had %d packets forwarded, want the burst of %d", st.Forwarded, burst)
	}
	if v := tg.metric("nym_gateway_packets_dropped_total", "reason", "rate_limited"); v != flood-burst {
		t.Errorf("rate_limited drops = %v, want %d", v, flood-burst)
	}

	// A second later the bucket holds ClientRate more, and no more.
	clock.set(time.Second)
	sendPackets(flooder, 1, 30)
	tg.waitMetric("nym_gateway_packets_dropped_total", flood-burst+20, "reason", "rate_limited")
	if st, _ := tg.Client(flooder.addr()); st.Forwarded != burst+10 {
		t.Errorf("flooder had %d packets forwarded, want %d", st.Forwarded, burst+10)
	}
	hops := map[byte]int{}
	for _, f := range tg.fwd.waitN(t, burst+10+5) {
		hops[f.hop[0]]++
	}
	if hops[1] != burst+10 || hops[2] != 5 {
		t.Errorf("forwarded %d flood and %d honest packets, want %d and 5", hops[1], hops[2], burst+10)
	}
}

// TestSourceRateShared: identities are free, so one host opening many
// clients shares one bucket for all of them; another host has its own.
func TestSourceRateShared(t *testing.T) {
	leakcheck.Check(t)
	clock := newTestClock()
	const burst = 30
	tg := startGateway(t, t.TempDir(), link.KeyPair{}, func(c *Config) {
		c.Now = clock.now
		c.SourceRate = 10
		c.SourceBurst = burst
	})
	var flood []*testClient
	for range 3 {
		c := tg.dialFrom("127.0.0.2", link.KeyPair{}, false)
		flood = append(flood, c)
		sendPackets(c, 1, 20)
	}
	other := tg.dialFrom("127.0.0.3", link.KeyPair{}, false)
	tg.waitMetric("nym_gateway_packets_dropped_total", 3*20-burst, "reason", "source_rate_limited")
	sendPackets(other, 2, 20)
	waitFor(t, "the other host's packets", func() bool {
		st, _ := tg.Client(other.addr())
		return st.Forwarded == 20
	})
	var forwarded uint64
	for _, c := range flood {
		st, _ := tg.Client(c.addr())
		forwarded += st.Forwarded
	}
	if forwarded != burst {
		t.Errorf("one host's clients had %d packets forwarded, want the shared burst of %d", forwarded, burst)
	}
}

// TestIdleClientsAreClosed is the attack of issue 10: idle authenticated
// links held every MaxClients slot for ever. They are now closed after
// IdleTimeout and a fresh client gets in.
func TestIdleClientsAreClosed(t *testing.T) {
	leakcheck.Check(t)
	tg := startGateway(t, t.TempDir(), link.KeyPair{}, func(c *Config) {
		c.MaxClients = 2
		c.IdleTimeout = 100 * time.Millisecond
	})
	// Not dial: an idle client may be gone again before a poll could see
	// it registered. Both were admitted (none refused), so they held both
	// slots until closed.
	idle := []*testClient{tg.dialNoWait(link.KeyPair{}, false), tg.dialNoWait(link.KeyPair{}, false)}
	for _, c := range idle {
		c.waitClosed()
	}
	waitFor(t, "the gateway to see both leave", func() bool { return tg.metric("nym_gateway_clients_connected") == 0 })
	if n := tg.links.IdleClosed.Load(); n != 2 {
		t.Errorf("IdleClosed = %d, want 2", n)
	}
	// A fresh client sends at once, so it is not idle, and is served.
	fresh := tg.dialNoWait(link.KeyPair{}, false)
	sendPackets(fresh, 1, 1)
	tg.fwd.waitN(t, 1)
	if v := tg.metric("nym_gateway_clients_refused_total"); v != 0 {
		t.Errorf("clients_refused_total = %v, want 0", v)
	}
}

// TestMaxClientsPerIP refuses client links past the per-address cap.
func TestMaxClientsPerIP(t *testing.T) {
	leakcheck.Check(t)
	tg := startGateway(t, t.TempDir(), link.KeyPair{}, func(c *Config) { c.MaxClientsPerIP = 2 })
	tg.dial(link.KeyPair{}, false)
	tg.dial(link.KeyPair{}, false)
	third := tg.dialNoWait(link.KeyPair{}, false)
	third.waitClosed()
	if n := tg.links.ConnsRejectedPerIP.Load(); n != 1 {
		t.Errorf("ConnsRejectedPerIP = %d, want 1", n)
	}
	if _, ok := tg.Client(third.addr()); ok {
		t.Error("a client refused for its address was registered")
	}
}

// TestIdentityRecordedOnlyAfterLife is the attack of issue 10: every fresh
// identity that completed a handshake was recorded, so throwaway ones could
// fill MaxStoredClients and the database. Now identities that have not
// stayed connected RecordClientsAfter hold at most MaxProvisionalClients
// records; past that an identity is recorded only once it has stayed.
func TestIdentityRecordedOnlyAfterLife(t *testing.T) {
	leakcheck.Check(t)
	dir, gwKey, clock := t.TempDir(), newKey(t), newTestClock()
	cfg := func(c *Config) {
		c.Now = clock.now
		c.RecordClientsAfter = time.Minute
		c.MaxProvisionalClients = 1
	}
	tg := startGateway(t, dir, gwKey, cfg)

	// The first brief visitor takes the one provisional record: it gets
	// its messages stored.
	brief := tg.dial(link.KeyPair{}, false)
	brief.disconnect(tg)
	tg.deliver(brief.addr(), id(1), payloadN(1))
	tg.waitMetric("nym_gateway_stored_total", 1)
	if v := tg.metric("nym_gateway_clients_provisional"); v != 1 {
		t.Fatalf("clients_provisional = %v, want 1", v)
	}

	// Throwaway identities beyond it: handshake, a packet, gone, and
	// forgotten with nothing recorded.
	for i := range 3 {
		throwaway := tg.dial(link.KeyPair{}, false)
		sendPackets(throwaway, 1, 1)
		tg.fwd.waitN(t, i+1)
		throwaway.conn.Close()
		waitFor(t, "the throwaway identity to be forgotten", func() bool {
			_, ok := tg.Client(throwaway.addr())
			return !ok
		})
		tg.deliver(throwaway.addr(), id(2), payloadN(2))
		tg.waitMetric("nym_gateway_packets_dropped_total", float64(i+1), "reason", "unknown_client")
	}
	if v := tg.metric("nym_gateway_clients_recorded"); v != 1 {
		t.Fatalf("clients_recorded = %v after throwaways, want 1", v)
	}

	// A client that stays: recorded at its first message a minute on.
	stayer := tg.dial(link.KeyPair{}, false)
	clock.set(time.Minute)
	sendPackets(stayer, 1, 1)
	tg.waitMetric("nym_gateway_clients_recorded", 2)
	stayer.disconnect(tg)
	tg.deliver(stayer.addr(), id(3), payloadN(3))
	tg.waitMetric("nym_gateway_stored_total", 2)
	if v := tg.metric("nym_gateway_clients_provisional"); v != 1 {
		t.Errorf("clients_provisional = %v, want 1 (the brief visitor)", v)
	}

	// A restarted gateway knows both, and still holds the brief visitor
	// as provisional; nothing of the throwaways.
	tg.stop()
	tg2 := startGateway(t, dir, gwKey, cfg)
	if v := tg2.metric("nym_gateway_clients_recorded"); v != 2 {
		t.Errorf("clients_recorded after restart = %v, want 2", v)
	}
	if v := tg2.metric("nym_gateway_clients_provisional"); v != 1 {
		t.Errorf("clients_provisional after restart = %v, want 1", v)
	}
	if st, ok := tg2.Client(stayer.addr()); !ok || st.StoredMessages != 1 {
		t.Errorf("stayer after restart: %+v, known %v; want one stored message", st, ok)
	}
	// The brief visitor comes back and stays: its record is confirmed, and
	// the provisional place is free again.
	back := tg2.dial(brief.key, true)
	if d := back.nextDeliver(); string(d.Payload) != string(payloadN(1)) {
		t.Errorf("brief visitor got %q", d.Payload)
	}
	clock.set(2*time.Minute + time.Second)
	sendPackets(back, 1, 1)
	waitFor(t, "the provisional record to be confirmed", func() bool {
		return tg2.metric("nym_gateway_clients_provisional") == 0
	})
}

// TestStoredBytesCapEvictsLargestFirst is the attack of issue 10: storage
// was bounded only per client, so identities × MaxStoredBytes could fill a
// disk. MaxStoredBytesTotal now holds for the whole database: past it the
// largest stores lose their oldest packets first and a small store is left
// alone.
func TestStoredBytesCapEvictsLargestFirst(t *testing.T) {
	leakcheck.Check(t)
	body := bytes.Repeat([]byte{0x5a}, 1000)
	record := int64(recordHeaderLen + len(body))
	limit := 20 * record
	tg := startGateway(t, t.TempDir(), link.KeyPair{}, func(c *Config) { c.MaxStoredBytesTotal = limit })
	small, medium, big := tg.dial(link.KeyPair{}, true), tg.dial(link.KeyPair{}, true), tg.dial(link.KeyPair{}, true)
	for _, c := range []*testClient{small, medium, big} {
		c.disconnect(tg)
	}
	stored := 0
	for _, s := range []struct {
		c *testClient
		n int
	}{{small, 4}, {medium, 12}, {big, 30}} {
		for i := range s.n {
			p := append(binary.BigEndian.AppendUint32(nil, uint32(i)), body[4:]...)
			tg.deliver(s.c.addr(), id(byte(i)), p)
		}
		stored += s.n
		tg.waitMetric("nym_gateway_stored_total", float64(stored))
	}

	if v := tg.metric("nym_gateway_stored_bytes"); v > float64(limit) {
		t.Errorf("stored_bytes = %v, over the cap of %d", v, limit)
	}
	counts := map[*testClient]int{}
	total := 0
	for _, c := range []*testClient{small, medium, big} {
		st, _ := tg.Client(c.addr())
		counts[c] = st.StoredMessages
		total += st.StoredMessages
	}
	if total > int(limit/record) {
		t.Errorf("%d messages stored, more than the cap's %d", total, limit/record)
	}
	if counts[small] != 4 || counts[medium] >= 12 || counts[big] >= 30 {
		t.Errorf("stored small %d, medium %d, big %d; want 4 and fewer than 12 and 30", counts[small], counts[medium], counts[big])
	}
	if v := tg.metric("nym_gateway_evicted_total"); int(v) != stored-total {
		t.Errorf("evicted_total = %v, want %d", v, stored-total)
	}

	// The big client lost its oldest: it gets a notice, then the newest
	// ones in order.
	back := tg.dial(big.key, true)
	if s := back.nextStatus(); !strings.Contains(s.Text, fmt.Sprint(30-counts[big])) {
		t.Errorf("status %q does not report %d dropped", s.Text, 30-counts[big])
	}
	for i := 30 - counts[big]; i < 30; i++ {
		d := back.nextDeliver()
		if got := binary.BigEndian.Uint32(d.Payload); got != uint32(i) {
			t.Fatalf("got message %d, want %d", got, i)
		}
	}
}
