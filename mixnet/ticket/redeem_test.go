package ticket

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nym-go/nym/mixnet/directory"
)

// lyingAuthority is a single directory authority over real HTTP that
// publishes an issuer key in its signed topology and answers issuance
// requests as sign says: honestly, with another key, or with garbage.
type lyingAuthority struct {
	net  *directory.Network
	srv  *httptest.Server
	sign atomic.Value // func(blinded []byte) []byte
}

func newLyingAuthority(t *testing.T) (*lyingAuthority, *testNet) {
	t.Helper()
	tn := newTestNet(t)
	dirPub, dirPriv, _ := ed25519.GenerateKey(rand.Reader)
	dirKey := directory.Key(dirPub)
	// The shared test key of auth1 for mixnet-entry serves as this
	// authority's key.
	issuer := tn.rsaKeys[issuerID{tn.net.Authorities[0].Key, TypeMixnetEntry, tn.expiry}]
	der, err := MarshalPublicKey(&issuer.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now().UTC().Truncate(time.Hour)
	top := &directory.Topology{
		EpochStart: start, EpochEnd: start.Add(time.Hour), EpochLength: time.Hour, RotationEpochs: 1, IssuedAt: start,
		Issuers: []directory.IssuerKey{{Authority: dirKey, Type: uint8(TypeMixnetEntry), Expiry: ExpiryFor(time.Now()), Key: der}},
	}
	st, err := directory.SignTopology(dirPriv, top)
	if err != nil {
		t.Fatal(err)
	}
	topJSON, _ := json.Marshal(st)
	la := &lyingAuthority{}
	la.sign.Store(func(b []byte) []byte {
		sig, err := BlindSign(issuer, b)
		if err != nil {
			panic(err)
		}
		return sig
	})
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+directory.PathTopology, func(w http.ResponseWriter, r *http.Request) { w.Write(topJSON) })
	mux.HandleFunc("POST "+directory.PathTicketIssue, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req IssueRequest
		if err := req.UnmarshalBinary(body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		sign := la.sign.Load().(func([]byte) []byte)
		var resp IssueResponse
		for _, b := range req.Blinded {
			resp.Signatures = append(resp.Signatures, sign(b))
		}
		out, _ := resp.AppendBinary(nil)
		w.Write(out)
	})
	la.srv = httptest.NewServer(mux)
	t.Cleanup(la.srv.Close)
	la.net = directory.SingleAuthority(la.srv.URL, dirKey)
	return la, tn
}

// TestRedeemKeepsOnlyTicketsThatVerify: an authority that signs with a key
// other than the one in the consensus (to tag one client's tickets), or
// answers garbage, gets no ticket into the book; an honest one does.
func TestRedeemKeepsOnlyTicketsThatVerify(t *testing.T) {
	la, tn := newLyingAuthority(t)
	other, err := GenerateIssuerKey()
	if err != nil {
		t.Fatal(err)
	}
	v, _ := NewVoucher(TypeMixnetEntry, 3)
	redeem := func(b *Book) (int, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return Redeem(ctx, la.net, la.srv.Client(), v.String(), b)
	}
	for name, sign := range map[string]func([]byte) []byte{
		"another key": func(b []byte) []byte {
			sig, err := BlindSign(other, b)
			if err != nil {
				panic(err)
			}
			return sig
		},
		"garbage": func(b []byte) []byte {
			sig := make([]byte, len(b))
			rand.Read(sig[1:])
			return sig
		},
	} {
		la.sign.Store(sign)
		b := NewBook()
		if n, err := redeem(b); err == nil || n != 0 || b.Remaining(TypeMixnetEntry, time.Now()) != 0 {
			t.Errorf("%s: %d tickets, %v; want none and an error", name, n, err)
		}
	}
	la.sign.Store(func(b []byte) []byte {
		sig, err := BlindSign(tn.rsaKeys[issuerID{tn.net.Authorities[0].Key, TypeMixnetEntry, tn.expiry}], b)
		if err != nil {
			panic(err)
		}
		return sig
	})
	b := NewBook()
	if n, err := redeem(b); err != nil || n != 3 {
		t.Fatalf("honest authority: %d tickets, %v", n, err)
	}
	var se *StatusError
	if _, err := Redeem(context.Background(), la.net, la.srv.Client(), "nv1.bogus", b); err == nil || errors.As(err, &se) {
		t.Fatalf("malformed voucher: %v, want a local error", err)
	}
}
