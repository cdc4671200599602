package ticket

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cloudflare/circl/blindsign/blindrsa"
	"github.com/nym-go/nym/mixnet/directory"
)

// testNet is a network of authorities with ticket keys, made with real
// keys: each authority has an RSA key per test type for one expiry.
type testNet struct {
	net     *directory.Network
	top     *directory.Topology
	privs   []ed25519.PrivateKey
	rsaKeys map[issuerID]*rsa.PrivateKey
	expiry  int64
	now     time.Time
}

var testTypes = []Type{TypeMixnetEntry, TypeWireGuardExit}

var (
	sharedOnce sync.Once
	shared     *testNet
)

// newTestNet returns the shared 3-authority, k = 2 network (RSA keys take a
// while to make, so every test of the package uses the same ones).
func newTestNet(t testing.TB) *testNet {
	t.Helper()
	sharedOnce.Do(func() {
		now := time.Now()
		tn := &testNet{net: &directory.Network{Threshold: 2}, rsaKeys: map[issuerID]*rsa.PrivateKey{}, expiry: ExpiryFor(now), now: now}
		tn.top = &directory.Topology{}
		for i := range 3 {
			pub, priv, err := ed25519.GenerateKey(rand.Reader)
			if err != nil {
				panic(err)
			}
			a := directory.Authority{Name: fmt.Sprintf("auth%d", i+1), Key: directory.Key(pub), URL: fmt.Sprintf("http://192.0.2.%d:8000", i+1)}
			tn.net.Authorities = append(tn.net.Authorities, a)
			tn.privs = append(tn.privs, priv)
			for _, typ := range testTypes {
				k, err := GenerateIssuerKey()
				if err != nil {
					panic(err)
				}
				id := issuerID{a.Key, typ, tn.expiry}
				tn.rsaKeys[id] = k
				der, err := MarshalPublicKey(&k.PublicKey)
				if err != nil {
					panic(err)
				}
				tn.top.Issuers = append(tn.top.Issuers, directory.IssuerKey{Authority: a.Key, Type: uint8(typ), Expiry: tn.expiry, Key: der})
			}
		}
		slices.SortFunc(tn.top.Issuers, directory.CompareIssuerKeys)
		shared = tn
	})
	return shared
}

func (tn *testNet) issuers(t testing.TB) Issuers {
	t.Helper()
	is, err := IssuersFrom(tn.net, tn.top)
	if err != nil {
		t.Fatal(err)
	}
	return is
}

// issue makes a ticket of typ signed blind by the authorities at signers
// (indices into the network file), by the real protocol: blind, sign,
// unblind.
func (tn *testNet) issue(t testing.TB, typ Type, signers ...int) (Ticket, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tk := Ticket{Type: typ, Expiry: tn.expiry, Key: [32]byte(pub)}
	for _, i := range signers {
		a := tn.net.Authorities[i].Key
		tk.Signatures = append(tk.Signatures, IssuerSignature{Authority: a, Sig: tn.blindSign(t, tn.rsaKeys[issuerID{a, typ, tn.expiry}], Message(typ, tn.expiry, tk.Key))})
	}
	return tk, priv
}

// blindSign runs RFC 9474 end to end for one message under priv.
func (tn *testNet) blindSign(t testing.TB, priv *rsa.PrivateKey, msg []byte) []byte {
	t.Helper()
	c, err := blindrsa.NewClient(variant, &priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	blinded, st, err := c.Blind(rand.Reader, msg)
	if err != nil {
		t.Fatal(err)
	}
	bs, err := BlindSign(priv, blinded)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := c.Finalize(st, bs)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}
