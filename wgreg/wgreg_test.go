package wgreg

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/rand"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/link"
)

// testGateway is a gateway's keys as a test needs them: its topology
// entry and its HPKE private key.
type testGateway struct {
	node directory.Node
	link link.KeyPair
	priv hpke.PrivateKey
}

func newTestGateway(t testing.TB, wgAddr string) *testGateway {
	t.Helper()
	pub, _, _ := ed25519.GenerateKey(nil)
	lk, err := link.GenerateKeyPair(nil)
	if err != nil {
		t.Fatal(err)
	}
	kem, err := link.GenerateKEMKey()
	if err != nil {
		t.Fatal(err)
	}
	lk.KEMKeys = link.NewKEMKeyring(kem)
	priv, err := NewPrivateKey(kem.Seed(), lk.Private)
	if err != nil {
		t.Fatal(err)
	}
	n := directory.Node{
		Identity:     directory.Key(pub),
		NoiseKey:     directory.Key(lk.Public),
		KEMKeys:      []directory.RotationKEMKey{{Rotation: 7, Key: kem.PublicKey()}},
		WGAddr:       wgAddr,
		Capabilities: directory.Capabilities{Entry: true, Exit: true},
	}
	return &testGateway{node: n, link: lk, priv: priv}
}

func TestSealOpenRoundTrip(t *testing.T) {
	gw := newTestGateway(t, "192.0.2.1:51820")
	req := &Request{WGKey: [32]byte{1, 2, 3}, Time: time.Unix(1_800_000_000, 0), Spend: []byte("spend")}
	rand.Read(req.Nonce[:])
	sealed, pending, err := SealRequest(&gw.node, 7, RoleExit, req)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := RequestRotation(sealed); err != nil || r != 7 {
		t.Fatalf("rotation %d, %v", r, err)
	}
	got, opened, err := OpenRequest(sealed, RoleExit, gw.node.Identity, gw.priv)
	if err != nil {
		t.Fatal(err)
	}
	if got.WGKey != req.WGKey || got.Nonce != req.Nonce || !got.Time.Equal(req.Time) || !bytes.Equal(got.Spend, req.Spend) {
		t.Fatalf("opened %+v, sealed %+v", got, req)
	}
	ans := &Answer{GatewayKey: [32]byte{9}, AddrV4: netip.MustParsePrefix("10.1.0.2/32"), AddrV6: netip.MustParsePrefix("fd00::2/128"), PeerTimeout: 3 * time.Minute, Allowance: 500e6}
	sa, err := opened.SealAnswer(ans)
	if err != nil {
		t.Fatal(err)
	}
	a, err := pending.OpenAnswer(sa)
	if err != nil {
		t.Fatal(err)
	}
	if *a != *ans {
		t.Fatalf("answer %+v, want %+v", a, ans)
	}
	p1, _ := pending.PSK()
	p2, _ := opened.PSK()
	if p1 != p2 || p1 == [32]byte{} {
		t.Fatalf("PSKs differ or are zero: %x %x", p1, p2)
	}

	// Sealed for the exit role: the same gateway's entry door cannot open
	// it, nor can another gateway, nor any altered byte.
	if _, _, err := OpenRequest(sealed, RoleEntry, gw.node.Identity, gw.priv); err == nil {
		t.Fatal("an exit's request opened as an entry's")
	}
	other := newTestGateway(t, "192.0.2.2:51820")
	if _, _, err := OpenRequest(sealed, RoleExit, other.node.Identity, other.priv); err == nil {
		t.Fatal("another gateway opened the request")
	}
	for _, i := range []int{3, 8, 100, len(sealed) - 1} {
		bad := bytes.Clone(sealed)
		bad[i] ^= 1
		if _, _, err := OpenRequest(bad, RoleExit, gw.node.Identity, gw.priv); err == nil {
			t.Fatalf("request with byte %d flipped opened", i)
		}
	}
	sa[0] ^= 1
	if _, err := pending.OpenAnswer(sa); err == nil {
		t.Fatal("altered answer opened")
	}
}

func TestMessagesRoundTrip(t *testing.T) {
	sealed := bytes.Repeat([]byte{0xab}, 100)
	msgs := []interface {
		AppendBinary([]byte) ([]byte, error)
	}{
		&Register{ID: 1, Sealed: sealed},
		&Relay{ID: 2, Exit: [32]byte{5}, Sealed: sealed},
		&Forward{ID: 3, Sealed: sealed},
		&Reply{ID: 4, Sealed: sealed},
		&Error{ID: 5, Code: ErrCodeRefused, Text: "no"},
	}
	for _, m := range msgs {
		b, err := m.AppendBinary(nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Parse(b)
		if err != nil {
			t.Fatalf("%T: %v", m, err)
		}
		again, _ := got.(interface {
			AppendBinary([]byte) ([]byte, error)
		}).AppendBinary(nil)
		if !bytes.Equal(b, again) {
			t.Fatalf("%T: round trip differs", m)
		}
	}
	if _, err := (&Register{Sealed: make([]byte, MaxSealed+1)}).AppendBinary(nil); err == nil {
		t.Fatal("oversized sealed part accepted")
	}
	for _, b := range [][]byte{nil, {1}, {1, 0, 0, 0, 1}, {2, 0, 0, 0, 1, 5}, {9, 0, 0, 0, 1, 1}, {5, 0, 0, 0, 1}} {
		if _, err := Parse(b); !errors.Is(err, ErrMalformed) {
			t.Fatalf("Parse(%x) = %v, want ErrMalformed", b, err)
		}
	}
}

func TestAnswerRejectsBadPrefixes(t *testing.T) {
	ok := &Answer{AddrV4: netip.MustParsePrefix("10.1.0.2/32")}
	b, err := ok.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	var a Answer
	if err := a.UnmarshalBinary(b); err != nil || a.AddrV6.IsValid() {
		t.Fatalf("v4-only answer: %+v, %v", a, err)
	}
	bad := bytes.Clone(b)
	bad[37] = 33
	if err := a.UnmarshalBinary(bad); err == nil {
		t.Fatal("IPv4 prefix /33 accepted")
	}
	if _, err := (&Answer{}).AppendBinary(nil); err == nil {
		t.Fatal("OK answer without an address accepted")
	}
}

// The allowance travels in the answer's last 8 bytes; an answer of an
// older gateway, without them, reads as unmetered; any other length is
// refused.
func TestAnswerAllowance(t *testing.T) {
	b, err := (&Answer{AddrV4: netip.MustParsePrefix("10.1.0.2/32"), Allowance: 1<<40 + 5}).AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != answerOKLen {
		t.Fatalf("OK answer of %d bytes, want %d", len(b), answerOKLen)
	}
	var a Answer
	if err := a.UnmarshalBinary(b); err != nil || a.Allowance != 1<<40+5 {
		t.Fatalf("allowance %d, %v", a.Allowance, err)
	}
	if err := a.UnmarshalBinary(b[:answerOKLenV0]); err != nil || a.Allowance != 0 || !a.AddrV4.IsValid() {
		t.Fatalf("answer without an allowance: %+v, %v", a, err)
	}
	for _, n := range []int{answerOKLenV0 - 1, answerOKLenV0 + 1, answerOKLen - 1, answerOKLen + 1} {
		c := make([]byte, n)
		copy(c, b)
		if err := a.UnmarshalBinary(c); !errors.Is(err, ErrMalformed) {
			t.Errorf("OK answer of %d bytes: %v, want ErrMalformed", n, err)
		}
	}
}

// TestClientRegistersOverLink runs RegisterEntry and RegisterExit against a
// link server that answers as the entry and, for relays, as the exit would
// (this package's server side lives in wggate; here only the contract is
// under test).
func TestClientRegistersOverLink(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	entry := newTestGateway(t, ln.Addr().String())
	exit := newTestGateway(t, "192.0.2.9:51820")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	answer := func(gw *testGateway, role Role, sealed []byte, wgKey byte) []byte {
		req, opened, err := OpenRequest(sealed, role, gw.node.Identity, gw.priv)
		if err != nil {
			t.Errorf("%s: %v", role, err)
			return nil
		}
		if req.WGKey[0] != wgKey {
			t.Errorf("%s got key %x", role, req.WGKey)
		}
		a, _ := opened.SealAnswer(&Answer{GatewayKey: [32]byte{byte(role)}, AddrV4: netip.MustParsePrefix("10.9.0.2/32")})
		return a
	}
	srv, err := link.NewServer(link.ServerConfig{Config: link.Config{
		Static: entry.link,
		Handler: func(c *link.Conn, f link.Frame) error {
			msg, err := Parse(f.Payload)
			if err != nil {
				return err
			}
			var out []byte
			switch m := msg.(type) {
			case *Register:
				out, _ = (&Reply{ID: m.ID, Sealed: answer(entry, RoleEntry, m.Sealed, 1)}).AppendBinary(nil)
			case *Relay:
				if m.Exit != exit.node.Identity {
					out, _ = (&Error{ID: m.ID, Code: ErrCodeUnavailable, Text: "unknown exit"}).AppendBinary(nil)
					break
				}
				out, _ = (&Reply{ID: m.ID, Sealed: answer(exit, RoleExit, m.Sealed, 2)}).AppendBinary(nil)
			}
			c.Send(link.Frame{Kind: link.KindClient, Payload: out})
			return nil
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ctx, ln)

	reg, s, err := RegisterEntry(ctx, entry.node, [32]byte{1}, Options{Rotation: 7})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if reg.GatewayKey[0] != byte(RoleEntry) || reg.Endpoint.String() != ln.Addr().String() || reg.PSK == [32]byte{} {
		t.Fatalf("entry registration %+v", reg)
	}
	xreg, err := s.RegisterExit(ctx, exit.node, [32]byte{2})
	if err != nil {
		t.Fatal(err)
	}
	if xreg.GatewayKey[0] != byte(RoleExit) || xreg.Endpoint.String() != "192.0.2.9:51820" || xreg.PSK == reg.PSK {
		t.Fatalf("exit registration %+v", xreg)
	}
	stranger := newTestGateway(t, "192.0.2.10:51820")
	if _, err := s.RegisterExit(ctx, stranger.node, [32]byte{2}); !errors.Is(err, ErrGateway) {
		t.Fatalf("unknown exit: %v, want ErrGateway", err)
	}
}

func TestEntriesAndExits(t *testing.T) {
	entry := directory.Node{WGAddr: "192.0.2.1:51820", Capabilities: directory.Capabilities{Entry: true}}
	exitAsEntry := directory.Node{WGAddr: "192.0.2.2:51820", Capabilities: directory.Capabilities{Entry: true, Exit: true}}
	noDoor := directory.Node{Capabilities: directory.Capabilities{Entry: true}}
	exit := directory.Node{WGAddr: "192.0.2.3:51820", Capabilities: directory.Capabilities{Entry: true, Exit: true}}
	topo := &directory.Topology{Entry: []directory.Node{entry, exitAsEntry, noDoor}, Exit: []directory.Node{exit, noDoor}}
	if e := Entries(topo); len(e) != 1 || e[0].WGAddr != entry.WGAddr {
		t.Fatalf("entries %+v", e)
	}
	if x := Exits(topo); len(x) != 1 || x[0].WGAddr != exit.WGAddr {
		t.Fatalf("exits %+v", x)
	}
}
