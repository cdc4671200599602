package ticket

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/nym-go/nym/mixnet/directory"
)

func TestTypes(t *testing.T) {
	for _, typ := range Types {
		got, err := ParseType(typ.String())
		if err != nil || got != typ || typ.Quota() == 0 {
			t.Errorf("%v: ParseType = %v, %v; quota %d", typ, got, err, typ.Quota())
		}
	}
	if TypeMixnetEntry.Quota() != 200<<20 || TypeWireGuardExit.Quota() != 500<<20 {
		t.Error("quotas are not Nym's")
	}
	if _, err := ParseType("bogus"); err == nil {
		t.Error("unknown type parsed")
	}
	if Type(9).Known() {
		t.Error("type 9 known")
	}
}

func TestExpiryIsADayBoundary(t *testing.T) {
	a := time.Date(2026, 3, 1, 0, 0, 1, 0, time.UTC)
	b := time.Date(2026, 3, 1, 23, 59, 59, 0, time.UTC)
	if ExpiryFor(a) != ExpiryFor(b) {
		t.Error("tickets of one day get different expiries")
	}
	if got, want := time.Unix(ExpiryFor(a), 0).UTC(), time.Date(2026, 3, 9, 0, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("expiry %s, want %s", got, want)
	}
}

func TestTicketAndSpendRoundTrip(t *testing.T) {
	tn := newTestNet(t)
	tk, priv := tn.issue(t, TypeMixnetEntry, 0, 1)
	enc, err := tk.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	var back Ticket
	if err := back.UnmarshalBinary(enc); err != nil {
		t.Fatal(err)
	}
	again, _ := back.AppendBinary(nil)
	if !bytes.Equal(enc, again) || back.Serial() != tk.Serial() {
		t.Fatal("ticket did not survive a round trip")
	}
	for n := range len(enc) {
		if err := back.UnmarshalBinary(enc[:n]); !errors.Is(err, ErrMalformed) {
			t.Fatalf("ticket cut to %d of %d bytes: %v", n, len(enc), err)
		}
	}
	if err := back.UnmarshalBinary(append(enc, 0)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("trailing byte: %v", err)
	}

	gw := [32]byte{7}
	s, err := NewSpend(tk, priv, gw, tn.now)
	if err != nil {
		t.Fatal(err)
	}
	senc, err := s.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	var sback Spend
	if err := sback.UnmarshalBinary(senc); err != nil {
		t.Fatal(err)
	}
	if err := tn.issuers(t).Verify(&sback, gw, tn.now); err != nil {
		t.Fatalf("decoded spend does not verify: %v", err)
	}
	for n := range len(senc) {
		if err := sback.UnmarshalBinary(senc[:n]); !errors.Is(err, ErrMalformed) {
			t.Fatalf("spend cut to %d bytes: %v", n, err)
		}
	}
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	if _, err := NewSpend(tk, other, gw, tn.now); err == nil {
		t.Error("NewSpend signed with a key that is not the ticket's")
	}
}

func TestSerialNamesTheKeyOnly(t *testing.T) {
	tn := newTestNet(t)
	tk, _ := tn.issue(t, TypeMixnetEntry, 0, 1)
	other := tk
	other.Signatures = other.Signatures[:1]
	other.Type = TypeWireGuardExit
	if tk.Serial() != other.Serial() {
		t.Error("serial depends on more than the key: the same ticket could be shown under two serials")
	}
	if tk.Serial() == [32]byte(tk.Key) {
		t.Error("serial is the key itself")
	}
}

// TestVerify: what a gateway must refuse, each with its typed error.
func TestVerify(t *testing.T) {
	tn := newTestNet(t)
	is := tn.issuers(t)
	gw := [32]byte{1, 2, 3}
	now := tn.now
	good, priv := tn.issue(t, TypeMixnetEntry, 0, 2)
	spend := func(tk Ticket, at time.Time, gateway [32]byte) *Spend {
		s, err := NewSpend(tk, priv, gateway, at)
		if err != nil {
			t.Fatal(err)
		}
		return &s
	}
	if err := is.Verify(spend(good, now, gw), gw, now); err != nil {
		t.Fatalf("good spend refused: %v", err)
	}
	if err := is.Verify(spend(good, now.Add(-SpendWindow), gw), gw, now); err != nil {
		t.Fatalf("spend at the edge of the window refused: %v", err)
	}

	one, _ := tn.issue(t, TypeMixnetEntry, 1)
	one.Key = good.Key // same key as priv so that only the issuer signatures are short
	one.Signatures = good.Signatures[:1]
	twiceSame := good
	twiceSame.Signatures = []IssuerSignature{good.Signatures[0], good.Signatures[0]}

	// A signature by a key that is no issuer of the network.
	stranger, _ := GenerateIssuerKey()
	foreign := good
	foreign.Signatures = []IssuerSignature{good.Signatures[0], {Authority: tn.net.Authorities[1].Key, Sig: tn.blindSign(t, stranger, Message(good.Type, good.Expiry, good.Key))}}
	// A signature by a key outside the network file, under its own name.
	var outsider directory.Key
	rand.Read(outsider[:])
	outside := good
	outside.Signatures = []IssuerSignature{good.Signatures[0], {Authority: outsider, Sig: good.Signatures[1].Sig}}
	// A ticket issued as mixnet-entry shown as wireguard-exit.
	retyped := good
	retyped.Type = TypeWireGuardExit
	// An expiry moved: the signatures no longer match; and a past one.
	expired := good
	expired.Expiry = ExpiryFor(now.Add(-(ValidDays + 2) * 24 * time.Hour))
	forged := spend(good, now, gw)
	forged.Sig[0] ^= 1
	unknownType := good
	unknownType.Type = 99

	// One authority named twice, the second time with garbage: whatever
	// the rest, no RSA work is spent on such a ticket (a spend with 64
	// signatures under one name would cost 64 verifications).
	repeated := good
	junk := append([]byte(nil), good.Signatures[0].Sig...)
	junk[10] ^= 1
	repeated.Signatures = []IssuerSignature{good.Signatures[0], {Authority: good.Signatures[0].Authority, Sig: junk}, good.Signatures[1]}

	cases := []struct {
		name string
		s    *Spend
		want error
	}{
		{"fewer than k signatures", spend(one, now, gw), ErrSignatures},
		{"one authority's signature twice", spend(twiceSame, now, gw), ErrMalformed},
		{"one authority named twice among k valid", spend(repeated, now, gw), ErrMalformed},
		{"signature by a non-issuer key", spend(foreign, now, gw), ErrSignatures},
		{"signature by an authority outside the network", spend(outside, now, gw), ErrSignatures},
		{"wrong gateway", spend(good, now, [32]byte{9}), ErrWrongGateway},
		{"stale timestamp", spend(good, now.Add(-SpendWindow-time.Second), gw), ErrStale},
		{"timestamp from the future", spend(good, now.Add(SpendWindow+time.Second), gw), ErrStale},
		{"expired", spend(expired, now, gw), ErrExpired},
		{"wrong type", spend(retyped, now, gw), ErrSignatures},
		{"unknown type", spend(unknownType, now, gw), ErrMalformed},
		{"forged ticket-key signature", forged, ErrSignatures},
	}
	for _, c := range cases {
		err := is.Verify(c.s, gw, now)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
	if err := is.Verify(spend(good, now, gw), gw, time.Unix(good.Expiry, 0)); !errors.Is(err, ErrExpired) && !errors.Is(err, ErrStale) {
		t.Errorf("spend at expiry: %v", err)
	}
	var none Issuers
	if err := none.Verify(spend(good, now, gw), gw, now); !errors.Is(err, ErrSignatures) {
		t.Errorf("zero Issuers accepted a ticket: %v", err)
	}
}

func TestIssuersFromSkipsWhatItCannotUse(t *testing.T) {
	tn := newTestNet(t)
	top := *tn.top
	top.Issuers = append([]directory.IssuerKey(nil), top.Issuers...)
	top.Issuers[0].Key = []byte("not a key")
	is, err := IssuersFrom(tn.net, &top)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := is.Key(top.Issuers[0].Authority, Type(top.Issuers[0].Type), top.Issuers[0].Expiry); ok {
		t.Error("a key that does not parse was taken")
	}
	if _, err := IssuersFrom(tn.net, &directory.Topology{}); err == nil {
		t.Error("a consensus without issuer keys gave issuers")
	}
}

func TestVoucherCodes(t *testing.T) {
	v, err := NewVoucher(TypeWireGuardEntry, 50)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseVoucher(v.String())
	if err != nil || back != v {
		t.Fatalf("ParseVoucher(%s) = %+v, %v", v, back, err)
	}
	for _, bad := range []string{"", "nv1.mixnet-entry.50", "nv2.mixnet-entry.50.AAAAAAAAAAAAAAAAAAAAAA", "nv1.mixnet-entry.0.AAAAAAAAAAAAAAAAAAAAAA",
		"nv1.mixnet-entry.050.AAAAAAAAAAAAAAAAAAAAAA", "nv1.bogus.5.AAAAAAAAAAAAAAAAAAAAAA", "nv1.mixnet-entry.5.AAAA", "nv1.mixnet-entry.1001.AAAAAAAAAAAAAAAAAAAAAA"} {
		if _, err := ParseVoucher(bad); err == nil {
			t.Errorf("ParseVoucher(%q) accepted", bad)
		}
	}
}

// TestSpendTimeCannotWrapIntoTheWindow: a spend dated 2^55 seconds before
// now, whose distance in nanoseconds wraps around to zero in an int64, is
// stale, not forever fresh; the same holds for a report's time.
func TestSpendTimeCannotWrapIntoTheWindow(t *testing.T) {
	tn := newTestNet(t)
	tk, priv := tn.issue(t, TypeMixnetEntry, 0, 1)
	gw := [32]byte{5}
	for _, at := range []int64{tn.now.Unix() - 1<<55, tn.now.Unix() + 1<<55, -1 << 63, 1<<63 - 1} {
		s := Spend{Ticket: tk, Gateway: gw, Time: at}
		copy(s.Sig[:], ed25519.Sign(priv, spendMessage(gw, at)))
		if err := tn.issuers(t).Verify(&s, gw, tn.now); !errors.Is(err, ErrStale) {
			t.Errorf("spend dated %d: %v, want ErrStale", at, err)
		}
		_, gwPriv, _ := ed25519.GenerateKey(rand.Reader)
		r, _ := SignReport(gwPriv, nil, tn.now)
		r.Time = at
		r.Sig = ed25519.Sign(gwPriv, r.message())
		if err := r.Check(tn.now); !errors.Is(err, ErrReport) {
			t.Errorf("report dated %d: %v, want refused", at, err)
		}
	}
}

// TestExpiryOffTheDayIsRefused: k authorities that publish keys for an
// expiry off the day boundary could give one client tickets no other
// client has, and so follow them from issuance to gateway; a gateway
// refuses such tickets, whoever signed them.
func TestExpiryOffTheDayIsRefused(t *testing.T) {
	tn := newTestNet(t)
	odd := tn.expiry - 3600
	top := *tn.top
	top.Issuers = nil
	for _, k := range tn.top.Issuers {
		top.Issuers = append(top.Issuers, k)
		k.Expiry = odd // the same keys, published again for the odd expiry
		top.Issuers = append(top.Issuers, k)
	}
	slices.SortFunc(top.Issuers, directory.CompareIssuerKeys)
	is, err := IssuersFrom(tn.net, &top)
	if err != nil {
		t.Fatal(err)
	}
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	tk := Ticket{Type: TypeMixnetEntry, Expiry: odd, Key: [32]byte(pub)}
	for _, i := range []int{0, 1} {
		a := tn.net.Authorities[i].Key
		tk.Signatures = append(tk.Signatures, IssuerSignature{Authority: a, Sig: tn.blindSign(t, tn.rsaKeys[issuerID{a, TypeMixnetEntry, tn.expiry}], Message(TypeMixnetEntry, odd, tk.Key))})
	}
	gw := [32]byte{3}
	s, err := NewSpend(tk, priv, gw, tn.now)
	if err != nil {
		t.Fatal(err)
	}
	if err := is.Verify(&s, gw, tn.now); !errors.Is(err, ErrMalformed) {
		t.Fatalf("ticket expiring off the day boundary: %v, want ErrMalformed", err)
	}
}
