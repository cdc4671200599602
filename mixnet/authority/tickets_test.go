package authority

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/ticket"
	"github.com/nym-go/nym/mixnet/ticket/tickettest"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// newTicketNet makes a 3-authority, k = 2 network with tickets on: each
// authority has its issuer keys (as `nym-api init` makes them) and the
// vouchers installed, and all run. It returns once a consensus carrying
// every authority's key for today's tickets is served.
func newTicketNet(t *testing.T, vouchers ...ticket.Voucher) *testNet {
	t.Helper()
	tn := newTestNet(t, 3, 2)
	tn.tickets = true
	for _, a := range tn.auths {
		if _, err := EnsureTicketKeys(a.dir, time.Now(), testLogger(t)); err != nil {
			t.Fatal(err)
		}
		if _, err := AddVouchers(a.dir, vouchers); err != nil {
			t.Fatal(err)
		}
	}
	for i := range tn.auths {
		tn.start(i)
	}
	waitFor(t, "a consensus with every authority's ticket keys", 60*time.Second, func() bool {
		is, ok := tn.issuers()
		if !ok {
			return false
		}
		for _, a := range tn.net.Authorities {
			if _, ok := is.Key(a.Key, ticket.TypeMixnetEntry, ticket.ExpiryFor(time.Now())); !ok {
				return false
			}
		}
		return true
	})
	return tn
}

// issuers are the ticket issuers of the consensus served now.
func (tn *testNet) issuers() (ticket.Issuers, bool) {
	c := directory.NewNetworkClient(tn.net, &http.Client{Timeout: 5 * time.Second})
	top, err := c.Topology(context.Background())
	if err != nil {
		return ticket.Issuers{}, false
	}
	is, err := ticket.IssuersFrom(tn.net, top)
	return is, err == nil
}

func redeem(tn *testNet, v ticket.Voucher, b *ticket.Book) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return ticket.Redeem(ctx, tn.net, &http.Client{Timeout: 10 * time.Second}, v.String(), b)
}

func mustVoucher(t *testing.T, n int) ticket.Voucher {
	t.Helper()
	v, err := ticket.NewVoucher(ticket.TypeMixnetEntry, n)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestTicketIssuance: the client side of issuance against three real
// authorities over loopback HTTP, k = 2.
func TestTicketIssuance(t *testing.T) {
	vOneDown, vTwice, vDisjoint := mustVoucher(t, 10), mustVoucher(t, 4), mustVoucher(t, 4)
	tn := newTicketNet(t, vOneDown, vTwice, vDisjoint)
	var books []*ticket.Book

	t.Run("k of n with one authority down", func(t *testing.T) {
		tn.stop(2)
		b := ticket.NewBook()
		books = append(books, b)
		n, err := redeem(tn, vOneDown, b)
		if err != nil || n != 10 {
			t.Fatalf("redeem with one authority down: %d tickets, %v", n, err)
		}
		is, ok := tn.issuers()
		if !ok {
			t.Fatal("no consensus")
		}
		gw := [32]byte{42}
		spendable := copyBook(t, b) // b stays whole for the unlinkability check
		for range 10 {
			tk, priv, err := spendable.Next(ticket.TypeMixnetEntry, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if len(tk.Signatures) != 2 {
				t.Fatalf("ticket carries %d signatures, want the 2 of the authorities up", len(tk.Signatures))
			}
			s, err := ticket.NewSpend(tk, priv, gw, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if err := is.Verify(&s, gw, time.Now()); err != nil {
				t.Fatalf("issued ticket does not verify at a gateway: %v", err)
			}
		}
		tn.start(2)
	})

	t.Run("a voucher redeemed twice is refused, a retry is answered", func(t *testing.T) {
		b := ticket.NewBook()
		books = append(books, b)
		if n, err := redeem(tn, vTwice, b); err != nil || n != 4 {
			t.Fatalf("first redemption: %d, %v", n, err)
		}
		// The same book retries: the same blinded requests, answered again;
		// no ticket is added twice.
		if n, err := redeem(tn, vTwice, b); err != nil || n != 0 {
			t.Fatalf("retry with the same requests: %d, %v", n, err)
		}
		if got := b.Remaining(ticket.TypeMixnetEntry, time.Now()); got != 4 {
			t.Fatalf("book holds %d tickets after the retry, want 4", got)
		}
		other := ticket.NewBook()
		n, err := redeem(tn, vTwice, other)
		if !errors.Is(err, ticket.ErrVoucherRefused) || n != 0 {
			t.Fatalf("second redemption into another book: %d, %v; want ErrVoucherRefused", n, err)
		}
		t.Logf("refused as it should be: %v", err)
	})

	t.Run("one voucher cannot yield two ticketbooks across disjoint authority sets", func(t *testing.T) {
		tn.stop(2)
		b1 := ticket.NewBook()
		books = append(books, b1)
		if n, err := redeem(tn, vDisjoint, b1); err != nil || n != 4 {
			t.Fatalf("redeem at auth1 and auth2: %d, %v", n, err)
		}
		// Now only auth2 and auth3 answer: auth3 has never seen the
		// voucher, auth2 has, for other requests.
		tn.stop(0)
		tn.start(2)
		waitFor(t, "auth3 back", 30*time.Second, func() bool { _, ok := tn.issuers(); return ok })
		b2 := ticket.NewBook()
		n, err := redeem(tn, vDisjoint, b2)
		if !errors.Is(err, ticket.ErrVoucherRefused) || n != 0 || b2.Remaining(ticket.TypeMixnetEntry, time.Now()) != 0 {
			t.Fatalf("second book from one voucher: %d tickets, %v", n, err)
		}
		t.Logf("refused as it should be: %v", err)
		tn.start(0)
	})

	// TestAuthorityStoresNothingLinkable, on the same network: everything
	// the authorities' databases hold after these issuances, dumped; no
	// ticket key, serial or unblinded signature is in it, nor a voucher
	// code.
	t.Run("the authorities store nothing linkable", func(t *testing.T) {
		var secrets [][]byte
		tickets := 0
		for _, b := range books {
			for _, tk := range bookTickets(t, b) {
				tickets++
				serial := tk.Serial()
				secrets = append(secrets, tk.Key[:], serial[:])
				for _, s := range tk.Signatures {
					secrets = append(secrets, s.Sig)
				}
			}
		}
		for _, v := range []ticket.Voucher{vOneDown, vTwice, vDisjoint} {
			secrets = append(secrets, []byte(v.String()))
		}
		if tickets != 18 {
			t.Fatalf("the books hold %d tickets, want 18", tickets)
		}
		for i, a := range tn.auths {
			tn.stop(i)
			dump, err := tickettest.Dump(filepath.Join(a.dir, DatabaseFile))
			if err != nil {
				t.Fatal(err)
			}
			issuance, _ := tickettest.Dump(filepath.Join(a.dir, DatabaseFile), IssuanceBucket)
			if len(issuance) == 0 {
				t.Fatalf("%s: no issuance record in the dump: it shows nothing", a.name)
			}
			for _, s := range secrets {
				if where := tickettest.Contains(dump, s); where != nil {
					t.Errorf("%s stores a value of a ticket or voucher at %v", a.name, where)
				}
			}
		}
	})
}

// copyBook copies b through its file.
func copyBook(t *testing.T, b *ticket.Book) *ticket.Book {
	t.Helper()
	path := filepath.Join(t.TempDir(), "book")
	if err := b.Save(path); err != nil {
		t.Fatal(err)
	}
	cp, err := ticket.LoadBook(path)
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

// bookTickets lists b's tickets, leaving b as it is.
func bookTickets(t *testing.T, b *ticket.Book) []ticket.Ticket {
	t.Helper()
	cp := copyBook(t, b)
	var out []ticket.Ticket
	for _, typ := range ticket.Types {
		for {
			tk, _, err := cp.Next(typ, time.Now())
			if err != nil {
				break
			}
			out = append(out, tk)
		}
	}
	return out
}

// TestIssueRefusals: what the issuance endpoint refuses before it signs
// anything, and that a retry of the same request gets the same answer.
func TestIssueRefusals(t *testing.T) {
	dir := t.TempDir()
	s, clock := newTestServer(t, Config{DataDir: dir})
	if _, err := s.tickets.keys.ensure(clock.Now(), s.log); err != nil {
		t.Fatal(err)
	}
	v := mustVoucher(t, 2)
	if _, err := AddVouchers(dir, []ticket.Voucher{v}); err != nil {
		t.Fatal(err)
	}
	expiry := ticket.ExpiryFor(clock.Now())
	priv, _ := s.tickets.keys.key(ticket.TypeMixnetEntry, expiry)
	blinded := func() [][]byte {
		out := make([][]byte, 2)
		for i := range out {
			out[i] = make([]byte, priv.Size())
			rand.Read(out[i][1:]) // below the modulus
		}
		return out
	}
	issue := func(req ticket.IssueRequest) ([][]byte, int, error) {
		body, err := req.AppendBinary(nil)
		if err != nil {
			t.Fatal(err)
		}
		var back ticket.IssueRequest
		if err := back.UnmarshalBinary(body); err != nil {
			t.Fatal(err)
		}
		return s.issue(&back, hashOf(body), clock.Now())
	}
	unknown := mustVoucher(t, 2)
	good := ticket.IssueRequest{Voucher: v.String(), Type: ticket.TypeMixnetEntry, Expiry: expiry, Blinded: blinded()}
	for _, c := range []struct {
		name   string
		req    ticket.IssueRequest
		status int
	}{
		{"unknown voucher", ticket.IssueRequest{Voucher: unknown.String(), Type: v.Type, Expiry: expiry, Blinded: blinded()}, http.StatusForbidden},
		{"another type", ticket.IssueRequest{Voucher: v.String(), Type: ticket.TypeWireGuardExit, Expiry: expiry, Blinded: blinded()}, http.StatusBadRequest},
		{"more tickets", ticket.IssueRequest{Voucher: v.String(), Type: v.Type, Expiry: expiry, Blinded: append(blinded(), blinded()[0])}, http.StatusBadRequest},
		{"tomorrow's expiry", ticket.IssueRequest{Voucher: v.String(), Type: v.Type, Expiry: ticket.ExpiryFor(clock.Now().Add(24 * time.Hour)), Blinded: blinded()}, http.StatusBadRequest},
		{"short message", ticket.IssueRequest{Voucher: v.String(), Type: v.Type, Expiry: expiry, Blinded: [][]byte{{1}, {2}}}, http.StatusBadRequest},
		// Not below the modulus: it cannot be signed, and must not use up
		// the voucher (the good request below is still its first).
		{"message above the modulus", ticket.IssueRequest{Voucher: v.String(), Type: v.Type, Expiry: expiry, Blinded: [][]byte{bytes.Repeat([]byte{0xff}, priv.Size()), bytes.Repeat([]byte{0xff}, priv.Size())}}, http.StatusBadRequest},
	} {
		if _, status, err := issue(c.req); status != c.status || err == nil {
			t.Errorf("%s: status %d, %v; want %d", c.name, status, err, c.status)
		}
	}
	first, status, err := issue(good)
	if err != nil {
		t.Fatalf("good request refused: %d %v", status, err)
	}
	again, _, err := issue(good)
	if err != nil || !slices.EqualFunc(first, again, func(a, b []byte) bool { return string(a) == string(b) }) {
		t.Fatalf("a retry of the same request got another answer: %v", err)
	}
	// Each answer costs a signature per ticket: a voucher's holder cannot
	// make the authority sign its request again and again.
	for range maxVoucherAnswers - 2 {
		if _, _, err := issue(good); err != nil {
			t.Fatalf("retry within the limit refused: %v", err)
		}
	}
	if _, status, err := issue(good); status != http.StatusTooManyRequests {
		t.Fatalf("answer %d to one voucher: %d %v, want 429", maxVoucherAnswers+1, status, err)
	}
	other := good
	other.Blinded = blinded()
	if _, status, err := issue(other); status != http.StatusConflict {
		t.Fatalf("the voucher with other requests: %d %v, want 409", status, err)
	}
	if got := counterValue(t, s.tickets.issued); got != 2 {
		t.Fatalf("nym_api_tickets_issued_total = %v, want the voucher's 2", got)
	}
	used, _ := s.store.voucherUsed(voucherID(v))
	if !used {
		t.Fatal("the voucher's use is not recorded")
	}
}

// TestTicketReports: gateways of the topology report serials; a serial
// reported by two gateways comes back Double; a report signed by a key
// that is no node is refused; a gateway reporting faster than its rate is
// refused and nothing of it is kept; expired serials are pruned.
func TestTicketReports(t *testing.T) {
	s, clock := newTestServer(t, Config{Tickets: Tickets{ReportRate: 1, ReportBurst: 4}})
	a, b, mix := newTestNode(t, entryGW), newTestNode(t, entryGW), newTestNode(t, mixOnly)
	registerAll(t, s, a, b, mix)
	probeTwice(t, s)
	nextEpoch(s, clock)
	for _, n := range []*testNode{a, b} {
		if _, ok := s.Topology().NodeByIdentity(n.id()); !ok {
			t.Fatalf("gateway %s is not in the topology", n.id())
		}
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	ctx := context.Background()
	send := func(priv ed25519.PrivateKey, serials ...[32]byte) error {
		r, err := ticket.SignReport(priv, serials, clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		return ticket.SendReport(ctx, srv.Client(), srv.URL, r)
	}
	fetch := func(since uint64) ticket.SpentList {
		l, err := ticket.FetchSpent(ctx, srv.Client(), srv.URL, since)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	x, y := [32]byte{1}, [32]byte{2}

	_, stranger, _ := ed25519.GenerateKey(rand.Reader)
	if err := send(stranger, x); !isStatus(err, http.StatusForbidden) {
		t.Fatalf("report by a key that is no node: %v, want 403", err)
	}
	if err := send(mix.priv, x); !isStatus(err, http.StatusForbidden) {
		t.Fatalf("report by a mix node: %v, want 403", err)
	}
	forged, _ := ticket.SignReport(a.priv, [][32]byte{x}, clock.Now())
	forged.Serials = [][32]byte{y}
	if err := ticket.SendReport(ctx, srv.Client(), srv.URL, forged); !isStatus(err, http.StatusForbidden) {
		t.Fatalf("report altered after signing: %v, want 403", err)
	}
	old, _ := ticket.SignReport(a.priv, [][32]byte{x}, clock.Now().Add(-ticket.ReportWindow-time.Minute))
	if err := ticket.SendReport(ctx, srv.Client(), srv.URL, old); !isStatus(err, http.StatusForbidden) {
		t.Fatalf("stale report: %v, want 403", err)
	}
	if l := fetch(0); len(l.Spent) != 0 {
		t.Fatalf("refused reports left serials: %+v", l)
	}

	if err := send(a.priv, x, y); err != nil {
		t.Fatal(err)
	}
	l := fetch(0)
	if len(l.Spent) != 2 || l.Spent[0].Double || l.Spent[1].Double {
		t.Fatalf("after one report: %+v", l)
	}
	if err := send(a.priv, x); err != nil { // the same gateway again: nothing new
		t.Fatal(err)
	}
	if l2 := fetch(l.Next); len(l2.Spent) != 0 || l2.Next != l.Next {
		t.Fatalf("a repeated report by the same gateway changed the list: %+v", l2)
	}
	if err := send(b.priv, x); err != nil {
		t.Fatal(err)
	}
	l2 := fetch(l.Next)
	if len(l2.Spent) != 1 || l2.Spent[0].Serial != x || !l2.Spent[0].Double {
		t.Fatalf("serial reported by two gateways: %+v, want it once more, Double", l2)
	}
	if got := counterValue(t, s.tickets.doubles); got != 1 {
		t.Fatalf("nym_api_ticket_double_spends_total = %v, want 1", got)
	}
	if all := fetch(0); len(all.Spent) != 2 {
		t.Fatalf("the full list has %d serials, want 2", len(all.Spent))
	}
	// a has used 3 of its 4 (x, y, x again); 2 more is over its rate.
	if err := send(a.priv, [32]byte{3}, [32]byte{4}); !isStatus(err, http.StatusTooManyRequests) {
		t.Fatalf("report over the gateway's rate: %v, want 429", err)
	}
	if all := fetch(0); len(all.Spent) != 2 {
		t.Fatalf("a refused report left serials: %+v", all)
	}
	clock.Advance(2 * time.Second)
	if err := send(a.priv, [32]byte{3}, [32]byte{4}); err != nil {
		t.Fatalf("report once the bucket refilled: %v", err)
	}

	// A cursor the authority never gave (it lost its database): start over.
	if l := fetch(1 << 40); l.Next != 0 || len(l.Spent) != 0 {
		t.Fatalf("cursor from the future: %+v, want Next = 0", l)
	}

	clock.Advance(ticket.MaxLifetime + time.Hour)
	if n, err := s.store.pruneSpent(clock.Now()); err != nil || n != 4 {
		t.Fatalf("prune: %d, %v", n, err)
	}
	if l := fetch(0); len(l.Spent) != 0 {
		t.Fatalf("expired serials still listed: %+v", l)
	}
}

func isStatus(err error, status int) bool {
	var se *ticket.StatusError
	return errors.As(err, &se) && se.StatusCode == status
}

func hashOf(b []byte) [32]byte { return sha256.Sum256(b) }

// TestConsensusIssuerKeys: the consensus carries each authority's keys from
// its own vote, sorted; an authority whose vote is missing keeps its keys
// of the previous consensus, so the document does not change with which
// votes arrived; keys of expired tickets are left out.
func TestConsensusIssuerKeys(t *testing.T) {
	net := threeAuthorityNetwork(t)
	var nodes []*testNode
	for range 3 {
		nodes = append(nodes, newTestNode(t, autoNode))
	}
	p := testParams()
	start := p.EpochStart.Unix()
	keysOf := func(i int) []directory.IssuerKey {
		a := net.Authorities[i].Key
		return []directory.IssuerKey{
			{Authority: a, Type: 1, Expiry: start - 1, Key: []byte{byte(i), 0}}, // expired at the epoch's start
			{Authority: a, Type: 1, Expiry: start + 86400, Key: []byte{byte(i), 1}},
			{Authority: a, Type: 3, Expiry: start + 86400, Key: []byte{byte(i), 3}},
		}
	}
	vote := func(i int) verifiedVote {
		v := voteOf(t, 0, nodes, 0.9)
		v.vote.Authority, v.vote.Issuers = net.Authorities[i].Key, keysOf(i)
		return v
	}
	all := consensusInput{net: net, epoch: 0, params: p, votes: []verifiedVote{vote(2), vote(0), vote(1)}}
	top, _, err := computeConsensus(all)
	if err != nil {
		t.Fatal(err)
	}
	if len(top.Issuers) != 6 {
		t.Fatalf("consensus carries %d issuer keys, want 2 of each authority", len(top.Issuers))
	}
	if !slices.IsSortedFunc(top.Issuers, directory.CompareIssuerKeys) {
		t.Fatal("issuer keys are not in order")
	}

	// Authority 2's vote did not arrive; the previous consensus has its keys.
	prevTop := *top
	prev := &acceptedConsensus{top: &prevTop, assign: assignmentOf(top)}
	prevDoc, _ := directory.EncodeConsensus(net, &prevTop)
	prev.sc = directory.SignedConsensus{Topology: prevDoc}
	withPrev := func(votes ...verifiedVote) []byte {
		in := consensusInput{net: net, epoch: 0, params: p, votes: votes, prev: prev}
		top, _, err := computeConsensus(in)
		if err != nil {
			t.Fatal(err)
		}
		doc, err := directory.EncodeConsensus(net, top)
		if err != nil {
			t.Fatal(err)
		}
		return doc
	}
	if a, b := withPrev(vote(0), vote(1), vote(2)), withPrev(vote(0), vote(1)); !bytes.Equal(a, b) {
		t.Fatal("a missing vote changed the issuer keys although the authority's keys did not change")
	}
	// A vote is the only voice for its authority's keys: a lie about
	// another's is not in the vote (Vote.Verify refuses it), and an
	// authority's new key replaces its old one.
	v0 := vote(0)
	v0.vote.Issuers = v0.vote.Issuers[1:2]
	in := consensusInput{net: net, epoch: 0, params: p, votes: []verifiedVote{v0, vote(1)}, prev: prev}
	top2, _, err := computeConsensus(in)
	if err != nil {
		t.Fatal(err)
	}
	n0 := 0
	for _, k := range top2.Issuers {
		if k.Authority == net.Authorities[0].Key {
			n0++
		}
	}
	if n0 != 1 {
		t.Fatalf("authority 0 voted 1 key, the consensus carries %d of its keys", n0)
	}
}

// TestRedeemFromSingleAuthority: a directory without a network file (k = 1)
// publishes its ticket keys in its signed topology and issues against them.
func TestRedeemFromSingleAuthority(t *testing.T) {
	dir := t.TempDir()
	if _, err := EnsureTicketKeys(dir, time.Now(), testLogger(t)); err != nil {
		t.Fatal(err)
	}
	v := mustVoucher(t, 3)
	if _, err := AddVouchers(dir, []ticket.Voucher{v}); err != nil {
		t.Fatal(err)
	}
	s, err := NewServer(Config{DataDir: dir, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	net := directory.SingleAuthority(srv.URL, directory.Key(s.PublicKey()))
	b := ticket.NewBook()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := ticket.Redeem(ctx, net, srv.Client(), v.String(), b)
	if err != nil || n != 3 {
		t.Fatalf("redeem from a single authority: %d, %v", n, err)
	}
	is, err := ticket.IssuersFrom(net, s.Topology())
	if err != nil {
		t.Fatal(err)
	}
	tk, priv, err := b.Next(ticket.TypeMixnetEntry, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	gw := [32]byte{8}
	sp, err := ticket.NewSpend(tk, priv, gw, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := is.Verify(&sp, gw, time.Now()); err != nil {
		t.Fatalf("ticket of a single authority does not verify: %v", err)
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// TestTicketEndpointsRefuseGarbage: random, cut and altered bodies to the
// ticket endpoints get a 4xx, never a 5xx or a crash, and nothing is
// recorded.
func TestTicketEndpointsRefuseGarbage(t *testing.T) {
	dir := t.TempDir()
	s, clock := newTestServer(t, Config{DataDir: dir})
	if _, err := s.tickets.keys.ensure(clock.Now(), s.log); err != nil {
		t.Fatal(err)
	}
	v := mustVoucher(t, 2)
	if _, err := AddVouchers(dir, []ticket.Voucher{v}); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	defer ts.Close()
	priv, _ := s.tickets.keys.key(ticket.TypeMixnetEntry, ticket.ExpiryFor(clock.Now()))
	req := ticket.IssueRequest{Voucher: v.String(), Type: v.Type, Expiry: ticket.ExpiryFor(clock.Now()),
		Blinded: [][]byte{bytes.Repeat([]byte{0xff}, priv.Size()), make([]byte, priv.Size()-1)}}
	validIssue, err := req.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	_, gw, _ := ed25519.GenerateKey(rand.Reader)
	rep, _ := ticket.SignReport(gw, [][32]byte{{1}}, clock.Now())
	validReport, _ := rep.AppendBinary(nil)
	buf := make([]byte, 700)
	for _, ep := range []struct {
		path  string
		valid []byte
	}{{directory.PathTicketIssue, validIssue}, {directory.PathTicketReport, validReport}} {
		for i := range 300 {
			var body []byte
			switch i % 3 {
			case 0:
				rand.Read(buf)
				body = buf[:i%len(buf)]
			case 1:
				body = bytes.Clone(ep.valid)
				body[i%len(body)] ^= byte(1 + i%255)
			case 2:
				body = ep.valid[:i%len(ep.valid)]
			}
			resp, err := http.Post(ts.URL+ep.path, ticket.ContentType, bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode < 400 || resp.StatusCode > 499 {
				t.Fatalf("%s: body %x: got %d, want 4xx", ep.path, body[:min(len(body), 40)], resp.StatusCode)
			}
		}
	}
	for _, q := range []string{"", "?since=x", "?since=-1"} {
		resp, err := http.Get(ts.URL + directory.PathTicketSpent + q)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("spent%s: %d, want 400", q, resp.StatusCode)
		}
	}
	if used, _ := s.store.voucherUsed(voucherID(v)); used {
		t.Fatal("garbage used up the voucher")
	}
	if l, _ := s.store.spentSince(0, 10); len(l.Spent) != 0 {
		t.Fatalf("garbage left serials: %+v", l)
	}
}

// TestTicketKeysRotate: day after day the authority makes the next day's
// keys and deletes those whose tickets have all expired, so it holds the 9
// expiry days in use of each type; a restart loads the same keys.
func TestTicketKeysRotate(t *testing.T) {
	dir := t.TempDir()
	k, err := openIssuerKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	self := newKey(t)
	var now time.Time
	for d := range 9 {
		now = t0.Add(time.Duration(d) * 24 * time.Hour)
		if _, err := k.ensure(now, testLogger(t)); err != nil {
			t.Fatal(err)
		}
	}
	pub := k.public(self, now)
	if want := 9 * len(ticket.Types); len(pub) != want {
		t.Fatalf("after 9 days: %d public keys, want %d", len(pub), want)
	}
	for _, ik := range pub {
		if ik.Expiry <= now.Unix() || ik.Expiry > ticket.ExpiryFor(now.Add(24*time.Hour)) {
			t.Fatalf("key of expiry %s held at %s", time.Unix(ik.Expiry, 0).UTC(), now)
		}
	}
	if _, ok := k.key(ticket.TypeMixnetEntry, ticket.ExpiryFor(now)); !ok {
		t.Fatal("no key for today's tickets")
	}
	files, _ := filepath.Glob(filepath.Join(dir, TicketKeysDir, "*.pem"))
	if len(files) != len(pub) {
		t.Fatalf("%d key files for %d keys: expired ones not deleted", len(files), len(pub))
	}
	again, err := openIssuerKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := again.public(self, now); !slices.EqualFunc(got, pub, func(a, b directory.IssuerKey) bool {
		return a.Type == b.Type && a.Expiry == b.Expiry && bytes.Equal(a.Key, b.Key)
	}) {
		t.Fatal("a restart loaded other keys")
	}
}
