package client

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nym-go/nym/internal/testnet"
	"github.com/nym-go/nym/internal/testticket"
	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/gateway"
	"github.com/nym-go/nym/mixnet/ticket"
)

// ticketNet is a fakeNet whose gateways require tickets of m, each buying
// quota bytes.
func ticketNet(t *testing.T, m *testticket.Mint, quota int64) *fakeNet {
	// The gateway's grace for a connection's first ticket grows with the
	// load: at load 30 under -race a client's handshake and spend took
	// more than the default 5 s, and the gateway closed the connection
	// ("no ticket") of a client that was paying.
	grace := testnet.LoadScaled(gateway.DefaultTicketGrace)
	return newFakeNetWith(t, 2, 1, func(id directory.Key, c *gateway.Config) {
		c.Tickets = gateway.TicketConfig{
			Required: true,
			Identity: [32]byte(id),
			Issuers:  func() (ticket.Issuers, error) { return m.Issuers, nil },
			Quota:    quota,
			Grace:    grace,
		}
	})
}

// A client pays its gateway when it connects and again whenever the gateway
// asks, so a message larger than one ticket's quota goes through without a
// refused packet: the next ticket is spent before the quota ends. The
// gateway asks with a quarter of a ticket left; that quarter must last the
// time it takes to pay (a round trip, a signature, a write to disk) at the
// client's rate, so the test's quota is sized as a real one is against a
// real rate: 2 MiB at 500 packets/s each way and cover (about 1.6 MB/s
// here) leaves 0.3 s, where 200 MB at 100 Mbit/s leaves 4 s; paying takes
// a signature and a write, milliseconds. On a loaded machine the rate
// drops, so the quarter lasts longer: the test waits on progress (acks
// coming back), not on a deadline for the whole transfer.
func TestClientSpendsTicketsWithoutPause(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 3 MiB through a paced client: a minute or so")
	}
	m := testticket.New(t, 3, 2)
	const quota = 2 << 20
	f := ticketNet(t, m, quota)
	srcA, srcB := m.Source(t, -1), m.Source(t, -1)
	paced := &Loopix{SendInterval: 2 * time.Millisecond}
	// A refused packet would show as a retransmission: give acks time
	// enough that a loaded machine makes none of its own.
	patient := &Retransmit{Max: 10, Multiplier: 1.5, Slack: 30 * time.Second}
	a := f.connect(t, func(c *Config) {
		c.Gateway, c.Tickets, c.Retransmit, c.Loopix = f.topo.Entry[0].Identity, srcA, patient, paced
	})
	b := f.connect(t, func(c *Config) { c.Gateway, c.Tickets, c.Loopix = f.topo.Exit[0].Identity, srcB, paced })
	if st := a.TicketStatus(); !st.Known || st.Unmetered || st.Left == 0 || st.Spent != 1 {
		t.Fatalf("after connect: %+v, want one ticket spent and bytes left", st)
	}
	msg := randomBytes(3 << 20)
	start := time.Now()
	if err := a.Send(context.Background(), b.Address(), msg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, c := range []*Client{a, b} {
				st, _ := f.gws[c.Address().Gateway].gw.Client(c.Address().Identity)
				t.Logf("%s: client %+v\ntickets %+v\ngateway %+v", c.Address(), c.Stats(), c.TicketStatus(), st)
			}
		}
	})
	if got := receiveWhileAcked(t, b, a, time.Minute); !bytes.Equal(got.Data, msg) {
		t.Fatalf("received %d bytes that differ", len(got.Data))
	}
	t.Logf("3 MiB in %v", time.Since(start))
	flush(t, a, 3*time.Minute)
	if s := a.Stats(); s.Retransmissions != 0 {
		t.Fatalf("%d retransmissions: a packet was refused or lost", s.Retransmissions)
	}
	// 3 MiB of payload is over 4.5 MiB on the wire with Sphinx headers.
	if n := srcA.Spent(); n < 3 {
		t.Fatalf("sender spent %d tickets of %d bytes for 3 MiB", n, quota)
	}
	if n := srcB.Spent(); n < 3 {
		t.Fatalf("receiver spent %d tickets of %d bytes for 3 MiB", n, quota)
	}
	for _, c := range []*Client{a, b} {
		st, ok := f.gws[c.Address().Gateway].gw.Client(c.Address().Identity)
		if !ok || st.Unpaid != 0 {
			t.Errorf("gateway's account of %s: %+v, want no packet refused", c.Address(), st)
		}
	}
	if st := a.TicketStatus(); st.Refusal != "" {
		t.Fatalf("sender's account %+v", st)
	}
}

// receiveWhileAcked waits for a message on to for as long as from's
// packets keep being acknowledged: it fails only when no ack has come back
// for stall, so a slow machine makes the test slower, not red.
func receiveWhileAcked(t *testing.T, to, from *Client, stall time.Duration) Message {
	t.Helper()
	acks, last := from.Stats().AcksReceived, time.Now()
	tick := time.NewTicker(stall / 4)
	defer tick.Stop()
	for {
		select {
		case m, ok := <-to.Receive():
			if !ok {
				t.Fatal("receive channel closed")
			}
			return m
		case <-tick.C:
			if n := from.Stats().AcksReceived; n != acks {
				acks, last = n, time.Now()
			} else if time.Since(last) > stall {
				t.Fatalf("no ack for %v and no message; stats %+v", stall, to.Stats())
			}
		}
	}
}

// A client with no ticket, or none left, is refused at Connect with an
// error that names what to do.
func TestClientWithoutTicketRefused(t *testing.T) {
	m := testticket.New(t, 3, 2)
	f := ticketNet(t, m, 1<<20)
	lp := fast
	for name, src := range map[string]TicketSource{"no source": nil, "empty source": m.Source(t, 0)} {
		cfg := Config{DirectoryURL: f.dirURL, DirectoryKey: f.dirKey, Loopix: &lp, Logger: testLogger(t), Tickets: src}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		c, err := Connect(ctx, cfg)
		cancel()
		if err == nil {
			c.Close()
			t.Fatalf("%s: connected without a ticket", name)
		}
		if !errors.Is(err, ErrNoTicket) || !strings.Contains(err.Error(), "nymvpn tickets add") {
			t.Fatalf("%s: %v, want ErrNoTicket naming nymvpn tickets add", name, err)
		}
	}
}

// Against a gateway that requires none the client spends nothing and says
// it is unmetered.
func TestClientUnmetered(t *testing.T) {
	m := testticket.New(t, 3, 2)
	f := newFakeNet(t, 2, 1)
	src := m.Source(t, -1)
	c := f.connect(t, func(c *Config) { c.Tickets = src })
	if st := c.TicketStatus(); !st.Known || !st.Unmetered || st.Spent != 0 || src.Spent() != 0 {
		t.Fatalf("%+v, %d spent: want unmetered and nothing spent", st, src.Spent())
	}
}
