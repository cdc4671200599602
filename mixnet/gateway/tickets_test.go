package gateway

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/nym-go/nym/internal/testticket"
	"github.com/nym-go/nym/mixnet/gatewire"
	"github.com/nym-go/nym/mixnet/link"
	"github.com/nym-go/nym/mixnet/sphinx"
	"github.com/nym-go/nym/mixnet/ticket"
)

// sendFrame is one client Send of a regular packet, as metered.
var sendFrame = (&gatewire.Send{Packet: make([]byte, sphinx.RegularPacketSize)}).AppendBinary(nil)

// ticketGateway serves a gateway that requires tickets of m, whose clients
// see Quota messages.
func ticketGateway(t *testing.T, m *testticket.Mint, quota int64, grace time.Duration, mutate func(*Config)) *testGateway {
	t.Helper()
	tg := newGateway(t, t.TempDir(), link.KeyPair{}, func(c *Config) {
		c.Tickets = ticketConfig(m, gatewayIdentity, quota, grace)
		if mutate != nil {
			mutate(c)
		}
	})
	tg.quotas = true
	tg.serve()
	return tg
}

// gatewayIdentity is the test gateway's identity key, the spends' binding.
var gatewayIdentity = [32]byte{0x47, 0x57}

func nextOf[T any](tc *testClient) T {
	tc.t.Helper()
	m := tc.next()
	v, ok := m.(T)
	if !ok {
		tc.t.Fatalf("got %#v, want a %T", m, v)
	}
	return v
}

func (tc *testClient) showTicket(spend []byte) {
	tc.sendRaw(link.KindClient, (&gatewire.Ticket{Spend: spend}).AppendBinary(nil))
}

func (tc *testClient) send(n int) {
	for range n {
		tc.sendRaw(link.KindClient, sendFrame)
	}
}

// A client without a ticket is told to pay, forwards nothing, gets nothing
// delivered or stored, and is disconnected after the grace period with a
// message naming what to do.
func TestNoTicketRefused(t *testing.T) {
	m := testticket.New(t, 3, 2)
	tg := ticketGateway(t, m, 1<<20, 300*time.Millisecond, nil)
	tc := tg.dial(link.KeyPair{}, true)
	if q := nextOf[*gatewire.Quota](tc); q.Left != 0 || !q.WantNext || q.Unmetered {
		t.Fatalf("greeting %+v, want 0 left and a request for a ticket", q)
	}
	tc.send(3)
	tg.waitMetric("nym_gateway_packets_dropped_total", 3, "reason", "no_ticket")
	tg.deliver(tc.addr(), id(1), payloadN(1))
	tg.waitMetric("nym_gateway_packets_dropped_total", 4, "reason", "no_ticket")
	st := nextOf[*gatewire.Status](tc)
	if st.Code != gatewire.StatusNoTicket || st.Text != NoTicketText || !strings.Contains(st.Text, "nymvpn tickets add") {
		t.Fatalf("status %+v, want StatusNoTicket naming nymvpn tickets add", st)
	}
	tc.waitClosed()
	if n := tg.fwd.count(); n != 0 {
		t.Fatalf("%d packets of a client without a ticket forwarded", n)
	}
	if got := tg.metric("nym_gateway_clients_unpaid_total"); got != 1 {
		t.Fatalf("clients_unpaid_total %v, want 1", got)
	}
	if st, ok := tg.Client(tc.addr()); ok && st.StoredMessages != 0 {
		t.Fatalf("%d messages stored for a client that never paid", st.StoredMessages)
	}
}

// A valid ticket buys its quota: the client forwards, is charged for what
// it sends and for what is delivered to it, and keeps its connection past
// the grace period, while a client next to it that does not pay is closed.
func TestTicketPays(t *testing.T) {
	m := testticket.New(t, 3, 2)
	const quota = 1 << 20
	tg := ticketGateway(t, m, quota, 300*time.Millisecond, nil)
	tc := tg.dial(link.KeyPair{}, true)
	nextOf[*gatewire.Quota](tc)
	tc.showTicket(m.SpendBytes(t, gatewayIdentity, time.Now()))
	if q := nextOf[*gatewire.Quota](tc); q.Left != quota || q.WantNext {
		t.Fatalf("after a ticket: %+v, want %d left", q, quota)
	}
	tc.send(10)
	tg.fwd.waitN(t, 10)
	tg.deliver(tc.addr(), id(1), payloadN(1))
	if d := tc.nextDeliver(); !bytes.Equal(d.Payload, payloadN(1)) {
		t.Fatalf("delivered %q", d.Payload)
	}
	// Deliveries are charged at once; what the client sends is gathered
	// per connection (chargeUp) and billed by the batch or at the end.
	cl := tg.lookup(tc.addr())
	want := int64(quota - deliverHeaderLen - len(payloadN(1)))
	waitFor(t, "the delivery charged", func() bool { return cl.meter.left.Load() == want })
	if got := tg.metric("nym_gateway_tickets_total", "outcome", "accepted"); got != 1 {
		t.Fatalf("accepted tickets %v", got)
	}

	other := tg.dial(link.KeyPair{}, true)
	other.waitClosed()
	select {
	case <-tc.conn.Done():
		t.Fatal("the paying client was closed too")
	default:
	}
	tc.send(1)
	tg.fwd.waitN(t, 11)
}

// The same ticket shown twice at one gateway is refused at once, by another
// client identity too, and after the gateway restarts: the spent set is on
// disk.
func TestTicketSpentTwiceHereRefused(t *testing.T) {
	m := testticket.New(t, 3, 2)
	dir := t.TempDir()
	mutate := func(c *Config) { c.Tickets = ticketConfig(m, gatewayIdentity, 1<<20, time.Minute) }
	tg := newGateway(t, dir, link.KeyPair{}, mutate)
	tg.quotas = true
	tg.serve()
	spend := m.SpendBytes(t, gatewayIdentity, time.Now())

	a := tg.dial(link.KeyPair{}, true)
	nextOf[*gatewire.Quota](a)
	a.showTicket(spend)
	if q := nextOf[*gatewire.Quota](a); q.Left == 0 {
		t.Fatal("first spend not accepted")
	}
	a.showTicket(spend)
	refusedSpent(t, a, "at this gateway")

	b := tg.dial(link.KeyPair{}, true)
	nextOf[*gatewire.Quota](b)
	b.showTicket(spend)
	refusedSpent(t, b, "at this gateway")
	if got := tg.metric("nym_gateway_tickets_total", "outcome", "spent_here"); got != 2 {
		t.Fatalf("spent_here %v, want 2", got)
	}

	key := tg.key
	tg.stop()
	tg2 := newGateway(t, dir, key, mutate)
	tg2.quotas = true
	tg2.serve()
	c := tg2.dial(link.KeyPair{}, true)
	nextOf[*gatewire.Quota](c)
	c.showTicket(spend)
	refusedSpent(t, c, "at this gateway")
}

func refusedSpent(t *testing.T, tc *testClient, where string) {
	t.Helper()
	st := nextOf[*gatewire.Status](tc)
	if st.Code != gatewire.StatusNoTicket || !strings.Contains(st.Text, "already spent "+where) {
		t.Fatalf("status %+v, want a refusal: already spent %s", st, where)
	}
}

// Spends that must not buy anything: bound to another gateway, made outside
// the spend window, signed by fewer than k authorities, of another type,
// expired, forged (a bit flipped) or not a spend at all.
func TestTicketInvalidRefused(t *testing.T) {
	m := testticket.New(t, 3, 2)
	tg := ticketGateway(t, m, 1<<20, time.Minute, nil)
	now := time.Now()
	var other [32]byte
	copy(other[:], "another gateway's identity key.")
	tk, priv := m.Ticket(t, ticket.TypeMixnetEntry, now, 2)
	oneSig, onePriv := m.Ticket(t, ticket.TypeMixnetEntry, now, 1)
	wg, wgPriv := m.Ticket(t, ticket.TypeWireGuardExit, now, 2)
	old, oldPriv := m.Ticket(t, ticket.TypeMixnetEntry, now.Add(-9*24*time.Hour), 2)
	flipped := testticket.SpendOf(t, tk, priv, gatewayIdentity, now)
	flipped[len(flipped)-1] ^= 1
	cases := []struct {
		name, outcome string
		spend         []byte
		want          error
	}{
		{"other gateway", "invalid", testticket.SpendOf(t, tk, priv, other, now), ticket.ErrWrongGateway},
		{"stale", "invalid", testticket.SpendOf(t, tk, priv, gatewayIdentity, now.Add(-ticket.SpendWindow-2*time.Second)), ticket.ErrStale},
		{"future", "invalid", testticket.SpendOf(t, tk, priv, gatewayIdentity, now.Add(ticket.SpendWindow+2*time.Second)), ticket.ErrStale},
		{"one signature of two", "invalid", testticket.SpendOf(t, oneSig, onePriv, gatewayIdentity, now), ticket.ErrSignatures},
		{"wrong type", "invalid", testticket.SpendOf(t, wg, wgPriv, gatewayIdentity, now), nil},
		{"expired", "invalid", testticket.SpendOf(t, old, oldPriv, gatewayIdentity, now), ticket.ErrExpired},
		{"forged", "invalid", flipped, ticket.ErrSignatures},
		{"garbage", "malformed", []byte("not a spend"), nil},
	}
	tc := tg.dial(link.KeyPair{}, true)
	nextOf[*gatewire.Quota](tc)
	for _, c := range cases {
		tc.showTicket(c.spend)
		st := nextOf[*gatewire.Status](tc)
		if st.Code != gatewire.StatusNoTicket || !strings.HasPrefix(st.Text, "ticket refused") {
			t.Fatalf("%s: status %+v, want a refusal", c.name, st)
		}
		if c.want != nil {
			var sp ticket.Spend
			if err := sp.UnmarshalBinary(c.spend); err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			if err := m.Issuers.Verify(&sp, gatewayIdentity, time.Now()); !errors.Is(err, c.want) {
				t.Fatalf("%s: Verify = %v, want %v", c.name, err, c.want)
			}
		}
	}
	if got := tg.metric("nym_gateway_tickets_total", "outcome", "invalid"); got != 7 {
		t.Fatalf("invalid %v, want 7", got)
	}
	if got := tg.metric("nym_gateway_tickets_total", "outcome", "malformed"); got != 1 {
		t.Fatalf("malformed %v, want 1", got)
	}
	if left := tg.lookup(tc.addr()).meter.left.Load(); left != 0 {
		t.Fatalf("refused tickets bought %d bytes", left)
	}
	// The good spend still works: nothing above spent it.
	tc.showTicket(testticket.SpendOf(t, tk, priv, gatewayIdentity, time.Now()))
	if q := nextOf[*gatewire.Quota](tc); q.Left != 1<<20 {
		t.Fatalf("good spend: %+v", q)
	}
}

// Refused tickets count as malformed messages: a client cannot make the
// gateway verify signatures without end.
func TestTicketRefusalsDisconnect(t *testing.T) {
	m := testticket.New(t, 3, 2)
	tg := ticketGateway(t, m, 1<<20, time.Minute, func(c *Config) { c.MaxBadMessages = 3 })
	tc := tg.dial(link.KeyPair{}, true)
	nextOf[*gatewire.Quota](tc)
	for range 4 {
		tc.showTicket([]byte("junk"))
	}
	tc.waitClosed()
	tg.waitMetric("nym_gateway_clients_disconnected_bad_total", 1)
}

// Below a quarter of a ticket the gateway asks for the next one, once; the
// next ticket adds to what is left, so a client that pays at once never
// has a packet refused.
func TestTicketAskNextAtQuarter(t *testing.T) {
	m := testticket.New(t, 3, 2)
	quota := int64(20 * len(sendFrame))
	tg := ticketGateway(t, m, quota, time.Minute, nil)
	tc := tg.dial(link.KeyPair{}, true)
	nextOf[*gatewire.Quota](tc)
	tc.showTicket(m.SpendBytes(t, gatewayIdentity, time.Now()))
	nextOf[*gatewire.Quota](tc)
	tc.send(15) // 5 frames left: a quarter, not below
	tg.fwd.waitN(t, 15)
	tc.send(1)
	q := nextOf[*gatewire.Quota](tc)
	if !q.WantNext || q.Left != uint64(4*len(sendFrame)) {
		t.Fatalf("%+v, want a request for the next ticket with 4 frames left", q)
	}
	tc.send(2) // no second request for the same ticket
	tc.showTicket(m.SpendBytes(t, gatewayIdentity, time.Now()))
	q = nextOf[*gatewire.Quota](tc)
	if q.WantNext || q.Left != uint64(22*len(sendFrame)) {
		t.Fatalf("%+v, want 22 frames left", q)
	}
	tc.send(22)
	tg.fwd.waitN(t, 40)
	if got := tg.metric("nym_gateway_packets_dropped_total", "reason", "no_ticket"); got != 0 {
		t.Fatalf("%v packets refused to a client that paid in time", got)
	}
}

// clock is a settable Config.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// The spent set holds serials and expiries only: nothing of the client that
// paid (its identity), nothing of the ticket but its serial (not its key or
// the issuers' signatures); and it forgets a serial once its ticket has
// expired.
func TestSpentSetHoldsOnlySerialsAndIsPruned(t *testing.T) {
	m := testticket.New(t, 3, 2)
	clk := &clock{t: time.Now()}
	dir := t.TempDir()
	tg := newGateway(t, dir, link.KeyPair{}, func(c *Config) {
		c.Tickets = ticketConfig(m, gatewayIdentity, 1<<20, time.Minute)
		c.Now = clk.now
	})
	tg.quotas = true
	tg.serve()
	tk, priv := m.Ticket(t, ticket.TypeMixnetEntry, clk.now(), 2)
	tc := tg.dial(link.KeyPair{}, true)
	nextOf[*gatewire.Quota](tc)
	tc.showTicket(testticket.SpendOf(t, tk, priv, gatewayIdentity, clk.now()))
	nextOf[*gatewire.Quota](tc)

	dump := dumpBolt(t, tg.spent.db)
	serial := tk.Serial()
	if !bytes.Contains(dump, serial[:]) {
		t.Fatal("the serial is not in the spent set")
	}
	secrets := map[string][]byte{"client identity": tc.key.Public[:], "ticket key": tk.Key[:]}
	for i, s := range tk.Signatures {
		secrets["issuer signature "+string(rune('0'+i))] = s.Sig
	}
	for what, v := range secrets {
		if len(v) > 0 && bytes.Contains(dump, v) {
			t.Fatalf("the spent set holds the %s", what)
		}
	}

	clk.set(time.Unix(tk.Expiry, 0).Add(pruneSlack + time.Minute))
	tg.kickReports()
	waitFor(t, "the expired serial pruned", func() bool { return tg.spent.size() == 0 })
	tg.stop()
	if d := dumpSpentFile(t, dir); bytes.Contains(d, serial[:]) {
		t.Fatal("the expired serial is still on disk")
	}
}

// dumpBolt is every bucket name, key and value of db, concatenated.
func dumpBolt(t *testing.T, db *bolt.DB) []byte {
	t.Helper()
	var out []byte
	err := db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			out = append(out, name...)
			return b.ForEach(func(k, v []byte) error {
				out = append(append(out, k...), v...)
				return nil
			})
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func dumpSpentFile(t *testing.T, dir string) []byte {
	t.Helper()
	s, err := openSpent(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	return dumpBolt(t, s.db)
}

// A spend of the most authorities with the largest keys fits a Ticket
// message.
func TestMaxSpendFitsGatewire(t *testing.T) {
	if ticket.MaxSpendSize > gatewire.MaxSpendLen {
		t.Fatalf("ticket.MaxSpendSize %d > gatewire.MaxSpendLen %d", ticket.MaxSpendSize, gatewire.MaxSpendLen)
	}
}

// Without tickets required every client is told it is unmetered and a
// ticket shown is not taken.
func TestUnmeteredGateway(t *testing.T) {
	tg := newGateway(t, t.TempDir(), link.KeyPair{}, nil)
	tg.quotas = true
	tg.serve()
	tc := tg.dial(link.KeyPair{}, true)
	if q := nextOf[*gatewire.Quota](tc); !q.Unmetered {
		t.Fatalf("greeting %+v, want unmetered", q)
	}
	tc.send(1)
	tg.fwd.waitN(t, 1)
}

// ticketConfig requires tickets checked against m, for a gateway of this
// identity, with quota bytes per ticket and this grace.
func ticketConfig(m *testticket.Mint, identity [32]byte, quota int64, grace time.Duration) TicketConfig {
	return TicketConfig{
		Required: true,
		Identity: identity,
		Issuers:  func() (ticket.Issuers, error) { return m.Issuers, nil },
		Quota:    quota,
		Grace:    grace,
	}
}

// The node's own services (an exit's IP router) reach the mixnet through
// their gateway as clients: exempt, they pay nothing and are never closed.
func TestTicketExempt(t *testing.T) {
	m := testticket.New(t, 3, 2)
	router := newKey(t)
	tg := ticketGateway(t, m, 1<<20, 200*time.Millisecond, func(c *Config) {
		c.Tickets.Exempt = func(id [32]byte) bool { return id == router.Public }
	})
	tc := tg.dial(router, true)
	if q := nextOf[*gatewire.Quota](tc); !q.Unmetered {
		t.Fatalf("exempt client greeted %+v, want unmetered", q)
	}
	other := tg.dial(link.KeyPair{}, true)
	other.waitClosed() // past the grace, which the exempt client ignores
	tc.send(5)
	tg.fwd.waitN(t, 5)
	select {
	case <-tc.conn.Done():
		t.Fatal("the exempt client was closed")
	default:
	}
}

// A serial this gateway accepted that the authorities' list flags as spent
// at another gateway too is counted once, and the client that paid with it
// loses what is left of that ticket and is asked for another.
func TestLearnedDoubleSpendTakesQuotaBack(t *testing.T) {
	m := testticket.New(t, 3, 2)
	const quota = 1 << 20
	tg := ticketGateway(t, m, quota, time.Minute, nil)
	tc := tg.dial(link.KeyPair{}, true)
	nextOf[*gatewire.Quota](tc)
	tk, priv := m.Ticket(t, ticket.TypeMixnetEntry, time.Now(), 2)
	tc.showTicket(testticket.SpendOf(t, tk, priv, gatewayIdentity, time.Now()))
	nextOf[*gatewire.Quota](tc)
	tc.send(4)
	tg.fwd.waitN(t, 4)

	// One authority of a k = 2 network says double: not enough, a lying
	// authority alone must not take honest clients' bytes. A second one
	// agrees: counted, and taken back.
	list := []learnedSerial{{serial: tk.Serial(), expiry: tk.Expiry, double: true}}
	if doubles, holders, err := tg.spent.learned(list, 0, 2, time.Now()); err != nil || doubles != 0 || len(holders) != 0 {
		t.Fatalf("one authority's word: %d doubles, holders %v, %v", doubles, holders, err)
	}
	doubles, holders, err := tg.spent.learned(list, 2, 2, time.Now())
	if err != nil || doubles != 1 || len(holders) != 1 || holders[0] != tg.lookup(tc.addr()) {
		t.Fatalf("learned: %d doubles, holders %v, %v", doubles, holders, err)
	}
	tg.debit(holders[0], quota)
	if q := nextOf[*gatewire.Quota](tc); q.Left != 0 || !q.WantNext {
		t.Fatalf("after the double spend: %+v, want nothing left and a request for a ticket", q)
	}
	tc.send(1)
	tg.waitMetric("nym_gateway_packets_dropped_total", 1, "reason", "no_ticket")
	// Learned again (from another authority), it counts no more.
	if doubles, holders, _ := tg.spent.learned(list, 1, 2, time.Now()); doubles != 0 || len(holders) != 0 {
		t.Fatalf("learned twice: %d doubles, %d holders", doubles, len(holders))
	}
}

// A client that spends its quota to the last byte and then sends only what
// is not metered (confirmations) is closed after the grace period: it
// cannot keep a slot on an empty ticket.
func TestSpentQuotaClosedAfterGrace(t *testing.T) {
	m := testticket.New(t, 3, 2)
	tg := ticketGateway(t, m, int64(2*len(sendFrame)), 300*time.Millisecond, nil)
	tc := tg.dial(link.KeyPair{}, true)
	nextOf[*gatewire.Quota](tc)
	tc.showTicket(m.SpendBytes(t, gatewayIdentity, time.Now()))
	nextOf[*gatewire.Quota](tc)
	tc.send(2)
	tg.fwd.waitN(t, 2)
	tc.confirm(0)
	tc.waitClosed()
	if got := tg.metric("nym_gateway_clients_unpaid_total"); got != 1 {
		t.Fatalf("clients_unpaid_total %v, want 1", got)
	}
}

// What a connection sent and had not yet billed (chargeUp gathers up to
// upBatch) is billed when it ends: reconnecting buys nothing.
func TestUnbilledBilledAtClose(t *testing.T) {
	m := testticket.New(t, 3, 2)
	const quota = 1 << 30
	tg := ticketGateway(t, m, quota, time.Minute, nil)
	key := newKey(t)
	tc := tg.dial(key, true)
	nextOf[*gatewire.Quota](tc)
	tc.showTicket(m.SpendBytes(t, gatewayIdentity, time.Now()))
	nextOf[*gatewire.Quota](tc)
	tc.send(3) // well under upBatch
	tg.fwd.waitN(t, 3)
	tc.disconnect(tg)
	st, _ := tg.Client(key.Public)
	if want := int64(quota - 3*len(sendFrame)); st.TicketBytes != want {
		t.Fatalf("%d bytes left after the connection ended, want %d", st.TicketBytes, want)
	}
}
