package ticket

import (
	"crypto/ed25519"
	"crypto/rand"
	"testing"
	"time"

	"github.com/cloudflare/circl/blindsign/blindrsa"
)

// BenchmarkIssueBook is the CPU cost of issuing one 50-ticket book with
// k = 2 of 3 authorities, the crypto without HTTP: the client makes 50
// ticket keys and blinds each message for each of k authorities, each
// authority signs its 50 blinded messages, the client unblinds and checks
// them. ms/book is per book; client-ms and authority-ms split it.
func BenchmarkIssueBook(b *testing.B) {
	const tickets = 50
	tn := newTestNet(b)
	k := tn.net.Threshold
	var client, authority time.Duration
	for b.Loop() {
		keys := make([][32]byte, tickets)
		t0 := time.Now()
		for i := range keys {
			pub, _, err := ed25519.GenerateKey(rand.Reader)
			if err != nil {
				b.Fatal(err)
			}
			keys[i] = [32]byte(pub)
		}
		client += time.Since(t0)
		for a := range k {
			priv := tn.rsaKeys[issuerID{tn.net.Authorities[a].Key, TypeMixnetEntry, tn.expiry}]
			c, err := blindrsa.NewClient(variant, &priv.PublicKey)
			if err != nil {
				b.Fatal(err)
			}
			t0 := time.Now()
			blinded := make([][]byte, tickets)
			states := make([]blindrsa.State, tickets)
			for i := range blinded {
				if blinded[i], states[i], err = c.Blind(rand.Reader, Message(TypeMixnetEntry, tn.expiry, keys[i])); err != nil {
					b.Fatal(err)
				}
			}
			t1 := time.Now()
			sigs := make([][]byte, tickets)
			for i := range sigs {
				if sigs[i], err = BlindSign(priv, blinded[i]); err != nil {
					b.Fatal(err)
				}
			}
			t2 := time.Now()
			for i := range sigs {
				if _, err := c.Finalize(states[i], sigs[i]); err != nil {
					b.Fatal(err)
				}
			}
			client += t1.Sub(t0) + time.Since(t2)
			authority += t2.Sub(t1)
		}
	}
	n := float64(b.N)
	b.ReportMetric(float64((client+authority).Microseconds())/1e3/n, "ms/book")
	b.ReportMetric(float64(client.Microseconds())/1e3/n, "client-ms")
	b.ReportMetric(float64(authority.Microseconds())/1e3/n/float64(k), "ms/authority")
}

// BenchmarkVerifySpend is what a gateway pays for one spend: the window,
// the ticket key's signature and k = 2 issuer signatures.
func BenchmarkVerifySpend(b *testing.B) {
	tn := newTestNet(b)
	is := tn.issuers(b)
	tk, priv := tn.issue(b, TypeMixnetEntry, 0, 1, 2)
	gw := [32]byte{1}
	s, err := NewSpend(tk, priv, gw, tn.now)
	if err != nil {
		b.Fatal(err)
	}
	enc, _ := s.AppendBinary(nil)
	b.ReportAllocs()
	for b.Loop() {
		var got Spend
		if err := got.UnmarshalBinary(enc); err != nil {
			b.Fatal(err)
		}
		if err := is.Verify(&got, gw, tn.now); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "us/spend")
}
