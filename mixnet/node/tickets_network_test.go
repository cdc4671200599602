package node_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nym-go/nym/internal/poll"
	"github.com/nym-go/nym/internal/testnet"
	"github.com/nym-go/nym/mixnet/authority"
	"github.com/nym-go/nym/mixnet/client"
	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/gatewire"
	"github.com/nym-go/nym/mixnet/link"
	"github.com/nym-go/nym/mixnet/node"
	"github.com/nym-go/nym/mixnet/ticket"
	"github.com/nym-go/nym/mixnet/ticket/tickettest"
	"github.com/nym-go/nym/wgreg"
)

// reportInterval is the gateways' ticket report interval in these tests.
const reportInterval = time.Second

// ticketNet is a network of three authorities (k = 2) issuing tickets and
// two entry gateways requiring them, once the consensus carries every
// authority's keys for today's tickets.
func ticketNet(t *testing.T) *testnet.Net { return ticketNetWith(t, false) }

// ticketNetWith is ticketNet, with a WireGuard door at both entry gateways
// (requiring tickets too, and the consensus waited for until it lists both
// doors and the WireGuard ticket keys) when wireGuard is set.
func ticketNetWith(t *testing.T, wireGuard bool) *testnet.Net {
	t.Helper()
	if testing.Short() {
		t.Skip("runs three authorities and waits for their issuer keys")
	}
	n := testnet.Start(t, testnet.Options{
		Authorities: 3, Threshold: 2, Entries: 2, MaxEntries: 2, Tickets: true,
		EditNode: func(c *node.Config) {
			if c.Mode != node.ModeMixnode {
				c.RequireTickets = true
				c.TicketReportInterval = node.Duration{Duration: reportInterval}
			}
			if wireGuard && c.Mode == node.ModeEntryGateway {
				c.WireGuardListen = "127.0.0.1:0"
			}
		},
	})
	types := []ticket.Type{ticket.TypeMixnetEntry}
	if wireGuard {
		types = append(types, ticket.TypeWireGuardEntry, ticket.TypeWireGuardExit)
	}
	poll.Until(t, 3*time.Minute, "a consensus with every authority's ticket keys (and both entries' WireGuard doors)", func() bool {
		top, err := n.Topology()
		if err != nil || wireGuard && len(wgreg.Entries(top)) < 2 {
			return false
		}
		is, err := ticket.IssuersFrom(n.Network, top)
		if err != nil {
			return false
		}
		for _, a := range n.Network.Authorities {
			for _, typ := range types {
				if _, ok := is.Key(a.Key, typ, ticket.ExpiryFor(time.Now())); !ok {
					return false
				}
			}
		}
		return true
	})
	return n
}

// redeemed redeems a fresh voucher of count tickets into a new book.
func redeemed(t *testing.T, n *testnet.Net, count int) (*ticket.Book, ticket.Voucher) {
	t.Helper()
	v, err := ticket.NewVoucher(ticket.TypeMixnetEntry, count)
	if err != nil {
		t.Fatal(err)
	}
	n.AddVouchers(v)
	b := ticket.NewBook()
	if got, err := redeem(n, v, b); err != nil || got != count {
		t.Fatalf("redeem: %d tickets, %v", got, err)
	}
	return b, v
}

func redeem(n *testnet.Net, v ticket.Voucher, b *ticket.Book) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return ticket.Redeem(ctx, n.Network, &http.Client{Timeout: 30 * time.Second}, v.String(), b)
}

// entryNodes are the running nodes holding the entry role, with their
// directory entries.
func entryNodes(t *testing.T, n *testnet.Net) ([]*testnet.Node, []directory.Node) {
	t.Helper()
	top, err := n.Topology()
	if err != nil {
		t.Fatal(err)
	}
	var nodes []*testnet.Node
	var dns []directory.Node
	for _, e := range top.Entry {
		for _, nd := range n.Nodes() {
			if nd.Running() && directory.Key(nd.Identity()) == e.Identity {
				nodes, dns = append(nodes, nd), append(dns, e)
			}
		}
	}
	if len(nodes) < 2 {
		t.Fatalf("%d entry gateways running, want 2", len(nodes))
	}
	return nodes, dns
}

// rawClient speaks gatewire to one gateway over a real link, as a client
// that shows tickets by hand.
type rawClient struct {
	t    *testing.T
	conn *link.Conn
	msgs chan any
}

func dialRaw(t *testing.T, gw directory.Node) *rawClient {
	t.Helper()
	key, err := link.GenerateKeyPair(nil)
	if err != nil {
		t.Fatal(err)
	}
	rc := &rawClient{t: t, msgs: make(chan any, 64)}
	rc.conn, err = link.Dial(context.Background(), gw.ClientsAddr, [32]byte(gw.NoiseKey), link.Config{
		Static: key,
		Handler: func(_ *link.Conn, f link.Frame) error {
			if m, err := gatewire.Parse(f.Payload); err == nil {
				select {
				case rc.msgs <- m:
				default:
				}
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rc.conn.Close)
	if q, ok := rc.next().(*gatewire.Quota); !ok || !q.WantNext {
		t.Fatalf("greeting %#v, want a request for a ticket", q)
	}
	return rc
}

func (rc *rawClient) next() any {
	rc.t.Helper()
	select {
	case m := <-rc.msgs:
		return m
	case <-time.After(time.Minute):
		rc.t.Fatal("no message from the gateway")
		return nil
	}
}

// show shows tk to gw, made at at, and returns the gateway's answer.
func (rc *rawClient) show(tk ticket.Ticket, priv []byte, gw [32]byte, at time.Time) any {
	rc.t.Helper()
	sp, err := ticket.NewSpend(tk, priv, gw, at)
	if err != nil {
		rc.t.Fatal(err)
	}
	b, err := sp.AppendBinary(nil)
	if err != nil {
		rc.t.Fatal(err)
	}
	rc.conn.Send(link.Frame{Kind: link.KindClient, Payload: (&gatewire.Ticket{Spend: b}).AppendBinary(nil)})
	return rc.next()
}

func refusal(t *testing.T, answer any, want string) {
	t.Helper()
	st, ok := answer.(*gatewire.Status)
	if !ok || st.Code != gatewire.StatusNoTicket || !strings.Contains(st.Text, want) {
		t.Fatalf("answer %#v, want a refusal saying %q", answer, want)
	}
}

// metricValue is the value of the unlabelled series name on nd's /metrics.
func metricValue(t *testing.T, nd *testnet.Node, name string) float64 {
	t.Helper()
	for _, l := range strings.Split(metric(t, nd, name), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == name {
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	return 0
}

// A ticket redeemed from the authorities buys bytes at one gateway; shown
// again there it is refused at once; shown at a second gateway it is
// refused once that gateway has fetched the first one's report (within a
// report interval), and both count the double spend. A spend bound to
// another gateway, or made outside the spend window, is refused; a voucher
// redeemed twice is refused.
func TestTicketsAcrossGateways(t *testing.T) {
	n := ticketNet(t)
	book, v := redeemed(t, n, 3)
	if _, err := redeem(n, v, ticket.NewBook()); !errors.Is(err, ticket.ErrVoucherRefused) {
		t.Fatalf("a voucher redeemed twice: %v, want ErrVoucherRefused", err)
	}
	nodes, gws := entryNodes(t, n)
	gwA, gwB := [32]byte(gws[0].Identity), [32]byte(gws[1].Identity)
	tk, priv, err := book.Next(ticket.TypeMixnetEntry, time.Now())
	if err != nil {
		t.Fatal(err)
	}

	a := dialRaw(t, gws[0])
	if q, ok := a.show(tk, priv, gwA, time.Now()).(*gatewire.Quota); !ok || q.Left == 0 {
		t.Fatalf("gateway A did not take a redeemed ticket: %#v", q)
	}
	accepted := time.Now()
	refusal(t, a.show(tk, priv, gwA, time.Now()), "already spent at this gateway")

	poll.Until(t, time.Minute, "gateway B to learn the serial spent at A", func() bool {
		return metricValue(t, nodes[1], "nym_gateway_ticket_spent_serials") >= 1
	})
	t.Logf("gateway B knew the serial spent at A %v after A took it (report interval %v)", time.Since(accepted).Round(time.Millisecond), reportInterval)
	b := dialRaw(t, gws[1])
	refusal(t, b.show(tk, priv, gwB, time.Now()), "already spent at another gateway")
	for _, nd := range nodes[:2] {
		poll.Until(t, time.Minute, "both gateways to count the double spend", func() bool {
			return metricValue(t, nd, "nym_gateway_ticket_double_spends_total") == 1
		})
	}

	// Another gateway's identity, and a stale or early time, buy nothing.
	tk2, priv2, err := book.Next(ticket.TypeMixnetEntry, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	refusal(t, b.show(tk2, priv2, gwA, time.Now()), "another gateway")
	refusal(t, b.show(tk2, priv2, gwB, time.Now().Add(-ticket.SpendWindow-5*time.Second)), "stale")
	refusal(t, b.show(tk2, priv2, gwB, time.Now().Add(ticket.SpendWindow+5*time.Second)), "stale")
	// None of those spent it: shown properly it buys bytes.
	if q, ok := b.show(tk2, priv2, gwB, time.Now()).(*gatewire.Quota); !ok || q.Left == 0 {
		t.Fatalf("a good spend after refused ones: %#v", q)
	}
}

// Clients pay by themselves from a ticketbook redeemed from the
// authorities, and exchange messages through gateways that require
// tickets; with one authority of three down, spending, reporting and a new
// client's payment still work. Then what the authorities store about the
// issuance and what the gateways store about the spends are dumped: no
// value of one is in the other, and the issuance records hold no serial,
// ticket key or issuer signature.
func TestClientsPayThroughNetwork(t *testing.T) {
	n := ticketNet(t)
	book, _ := redeemed(t, n, 6)
	// What must never reach the authorities' issuance records: every
	// ticket's serial, key and signatures (read before the clients spend).
	var secrets [][]byte
	dir := t.TempDir()
	path := filepath.Join(dir, "tickets.book")
	if err := book.Save(path); err != nil {
		t.Fatal(err)
	}
	copyBook, err := ticket.LoadBook(path)
	if err != nil {
		t.Fatal(err)
	}
	for {
		tk, _, err := copyBook.Next(ticket.TypeMixnetEntry, time.Now())
		if errors.Is(err, ticket.ErrNoTickets) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		serial := tk.Serial()
		secrets = append(secrets, serial[:], tk.Key[:])
		for _, s := range tk.Signatures {
			secrets = append(secrets, s.Sig)
		}
	}
	nodes, gws := entryNodes(t, n)
	connect := func(gw directory.Key) *client.Client {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		c, err := client.Connect(ctx, client.Config{
			Network: n.Network, Gateway: gw, Tickets: &client.BookTickets{Path: path},
			Loopix: &client.Loopix{}, Logger: slog.New(slog.DiscardHandler),
		})
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	exchange := func(from, to *client.Client) {
		t.Helper()
		msg := []byte("paid for with an unlinkable ticket")
		if err := from.Send(context.Background(), to.Address(), msg); err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-to.Receive():
			if string(m.Data) != string(msg) {
				t.Fatalf("received %q", m.Data)
			}
		case <-time.After(2 * time.Minute):
			t.Fatal("no message through the paid gateways")
		}
	}
	a, b := connect(gws[0].Identity), connect(gws[1].Identity)
	exchange(a, b)
	if st := a.TicketStatus(); st.Spent != 1 || st.Left == 0 {
		t.Fatalf("client a: %+v", st)
	}

	sent := func() float64 {
		return metricValueLabelled(t, nodes[0], `nym_gateway_ticket_redemptions_total{outcome="report_sent"}`)
	}
	poll.Until(t, time.Minute, "gateway A to report a's ticket to all three authorities", func() bool { return sent() >= 3 })
	n.StopAuthority(0)
	before := sent()
	c := connect(gws[0].Identity)
	exchange(c, b)
	poll.Until(t, time.Minute, "gateway A to report c's ticket to the two authorities left", func() bool { return sent() >= before+2 })

	// The dumps, with every store closed: stop the nodes and authorities.
	for _, nd := range n.Nodes() {
		if nd.Running() {
			n.StopNode(nd.Index)
		}
	}
	var gatewayStore []tickettest.Record
	for _, nd := range nodes {
		d, err := tickettest.Dump(filepath.Join(nd.Config.DataDir, "spent.db"))
		if err != nil {
			t.Fatal(err)
		}
		gatewayStore = append(gatewayStore, d...)
	}
	if len(gatewayStore) == 0 {
		t.Fatal("the gateways' spent sets are empty")
	}
	for i := 1; i < len(n.Network.Authorities); i++ {
		n.StopAuthority(i)
	}
	for i := range n.Network.Authorities {
		issuance, err := tickettest.Dump(filepath.Join(n.AuthorityDir(i), authority.DatabaseFile), authority.IssuanceBucket)
		if err != nil {
			t.Fatal(err)
		}
		if len(issuance) == 0 {
			t.Fatalf("authority %d recorded no issuance", i)
		}
		for _, s := range secrets {
			if where := tickettest.Contains(issuance, s); where != nil {
				t.Fatalf("authority %d's issuance records hold a ticket's serial, key or signature at %v", i, where)
			}
		}
		for _, v := range tickettest.Values(gatewayStore, 16) {
			if where := tickettest.Contains(issuance, v); where != nil {
				t.Fatalf("a value the gateways keep is in authority %d's issuance records at %v", i, where)
			}
		}
		for _, v := range tickettest.Values(issuance, 16) {
			if where := tickettest.Contains(gatewayStore, v); where != nil {
				t.Fatalf("a value of authority %d's issuance records is in a gateway's spent set at %v", i, where)
			}
		}
	}
}

// metricValueLabelled is the value of the series written out in full.
func metricValueLabelled(t *testing.T, nd *testnet.Node, series string) float64 {
	t.Helper()
	name, _, _ := strings.Cut(series, "{")
	for _, l := range strings.Split(metric(t, nd, name), "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	return 0
}
