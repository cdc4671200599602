// Package testticket mints bandwidth tickets for tests that need a gateway
// to take them without running authorities: RSA issuer keys in a
// consensus of k of n pretend authorities, and tickets signed with them.
//
// A ticket's RFC 9474 signature, once unblinded, is an RSASSA-PSS signature
// (SHA-384, 48-byte salt) over the ticket's message, so the mint signs
// directly: blindness is the issuing side's business (package ticket and
// the authority), and a gateway sees only finished tickets. Tests of
// issuance use real authorities.
package testticket

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha512"
	"crypto/x509"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/ticket"
)

// Mint stands for k of n authorities.
type Mint struct {
	Network  *directory.Network
	Topology *directory.Topology // carries the issuer keys only
	Issuers  ticket.Issuers
	keys     []*rsa.PrivateKey
}

// maxAuthorities is how many issuer keys are made, once per test binary: a
// 2048-bit key takes a while.
const maxAuthorities = 3

var (
	keysOnce sync.Once
	keys     []*rsa.PrivateKey
	keysErr  error
)

// New makes a mint of n authorities (at most 3) with threshold k, whose
// keys sign tickets issued today or yesterday.
func New(t testing.TB, n, k int) *Mint {
	t.Helper()
	keysOnce.Do(func() {
		for range maxAuthorities {
			key, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				keysErr = err
				return
			}
			keys = append(keys, key)
		}
	})
	if keysErr != nil {
		t.Fatal(keysErr)
	}
	if n > maxAuthorities || k > n || k < 1 {
		t.Fatalf("testticket: %d of %d authorities", k, n)
	}
	m := &Mint{Network: &directory.Network{Threshold: k}, Topology: &directory.Topology{}, keys: keys[:n]}
	now := time.Now()
	for i := range n {
		pub, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		a, err := directory.KeyFromEd25519(pub)
		if err != nil {
			t.Fatal(err)
		}
		// An address nothing listens on: these authorities take no reports.
		m.Network.Authorities = append(m.Network.Authorities, directory.Authority{Name: fmt.Sprintf("auth%d", i+1), Key: a, URL: "http://192.0.2.1:1"})
		der, err := x509.MarshalPKIXPublicKey(&m.keys[i].PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		for _, typ := range ticket.Types {
			for _, exp := range []int64{ticket.ExpiryFor(now), ticket.ExpiryFor(now.Add(-24 * time.Hour))} {
				m.Topology.Issuers = append(m.Topology.Issuers, directory.IssuerKey{Authority: a, Type: uint8(typ), Expiry: exp, Key: der})
			}
		}
	}
	var err error
	if m.Issuers, err = ticket.IssuersFrom(m.Network, m.Topology); err != nil {
		t.Fatal(err)
	}
	return m
}

// Ticket mints a ticket of typ issued at issued, signed by the first
// signers authorities, with its private key.
func (m *Mint) Ticket(t testing.TB, typ ticket.Type, issued time.Time, signers int) (ticket.Ticket, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tk := ticket.Ticket{Type: typ, Expiry: ticket.ExpiryFor(issued), Key: [32]byte(pub)}
	h := sha512.Sum384(ticket.Message(tk.Type, tk.Expiry, tk.Key))
	for i := range signers {
		sig, err := rsa.SignPSS(rand.Reader, m.keys[i], crypto.SHA384, h[:], &rsa.PSSOptions{SaltLength: 48})
		if err != nil {
			t.Fatal(err)
		}
		tk.Signatures = append(tk.Signatures, ticket.IssuerSignature{Authority: m.Network.Authorities[i].Key, Sig: sig})
	}
	return tk, priv
}

// SpendBytes mints a mixnet-entry ticket and shows it to gateway at now, in
// wire form.
func (m *Mint) SpendBytes(t testing.TB, gateway [32]byte, now time.Time) []byte {
	t.Helper()
	tk, priv := m.Ticket(t, ticket.TypeMixnetEntry, now, m.Network.Threshold)
	return SpendOf(t, tk, priv, gateway, now)
}

// SpendOf shows tk to gateway at now, in wire form.
func SpendOf(t testing.TB, tk ticket.Ticket, priv ed25519.PrivateKey, gateway [32]byte, now time.Time) []byte {
	t.Helper()
	sp, err := ticket.NewSpend(tk, priv, gateway, now)
	if err != nil {
		t.Fatal(err)
	}
	b, err := sp.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Source is a supply of n tickets from the mint, spent as a client's
// ticket source (mixnet/client.TicketSource) spends them: one per call,
// ticket.ErrNoTickets once n are gone. Negative n never runs out.
func (m *Mint) Source(t testing.TB, n int) *Source {
	return &Source{m: m, t: t, left: n}
}

// Source is what Mint.Source returns.
type Source struct {
	m     *Mint
	t     testing.TB
	mu    sync.Mutex
	left  int
	spent int
}

// Spend takes the next ticket and shows it to gateway at now.
func (s *Source) Spend(gateway directory.Key, now time.Time) (ticket.Spend, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.left == 0 {
		return ticket.Spend{}, fmt.Errorf("test source: %w", ticket.ErrNoTickets)
	}
	s.left--
	s.spent++
	tk, priv := s.m.Ticket(s.t, ticket.TypeMixnetEntry, now, s.m.Network.Threshold)
	return ticket.NewSpend(tk, priv, [32]byte(gateway), now)
}

// Spent is how many tickets were taken.
func (s *Source) Spent() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.spent
}
