package wggate

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/curve25519"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/tuntest"

	"github.com/nym-go/nym/internal/poll"
	"github.com/nym-go/nym/wgreg"
)

// A paid peer is removed once its device counters pass what its ticket
// bought; a paid peer that moves nothing stays; paying again registers the
// key anew. The client is a real WireGuard device sending real packets.
func TestPaidPeerRemovedWhenQuotaUsed(t *testing.T) {
	const quota = 16 << 10
	g, node, _ := startEntry(t, func(c *Config) {
		c.RequireTickets, c.Tickets, c.TicketQuota = true, &spendChecker{good: "good spend"}, quota
	})
	opts := wgreg.Options{Rotation: testRotation, EntrySpend: []byte("good spend")}
	register := func(pub [32]byte) wgreg.Registration {
		t.Helper()
		reg, s, err := wgreg.RegisterEntry(context.Background(), node, pub, opts)
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		return reg
	}
	register(wgKey(t)) // paid, idle: stays

	var priv [32]byte
	rand.Read(priv[:])
	pubB, err := curve25519.X25519(priv[:], curve25519.Basepoint)
	if err != nil {
		t.Fatal(err)
	}
	pub := [32]byte(pubB)
	reg := register(pub)
	ct := tuntest.NewChannelTUN()
	dev := device.NewDevice(ct.TUN(), conn.NewStdNetBind(), wgLogger(testLogger()))
	t.Cleanup(dev.Close)
	if err := dev.IpcSet(fmt.Sprintf("private_key=%s\npublic_key=%s\npreshared_key=%s\nendpoint=%s\nallowed_ip=0.0.0.0/0\n",
		hex.EncodeToString(priv[:]), hex.EncodeToString(reg.GatewayKey[:]), hex.EncodeToString(reg.PSK[:]), reg.Endpoint)); err != nil {
		t.Fatal(err)
	}
	if err := dev.Up(); err != nil {
		t.Fatal(err)
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		pkt := tuntest.Ping(netip.MustParseAddr("192.0.2.1"), reg.AddrV4.Addr())
		for {
			select {
			case <-stop:
				return
			case ct.Outbound <- pkt: // what the device reads and sends
			}
		}
	}()
	poll.Until(t, time.Minute, "the peer that used its quota to be removed", func() bool { return g.quota.exhausted.Load() == 1 })
	close(stop)
	<-done
	if n := g.Peers(); n != 1 {
		t.Fatalf("%d peers; want the idle paid one left", n)
	}
	if dump, _ := g.dev.IpcGet(); strings.Contains(dump, hex.EncodeToString(pub[:])) {
		t.Fatal("the peer out of quota is still on the device")
	}
	register(pub)
	if n := g.Peers(); n != 2 {
		t.Fatalf("%d peers after paying again; want 2", n)
	}
}

// A paid registration of a key already registered tops up its allowance:
// the answer says what is left, the ticket's bytes added. The same top-up
// replayed (its bytes sent again, as an eavesdropper on the link to the
// entry could) is refused by the nonce check and adds nothing.
func TestTopUpAddsOnceAndReplayAddsNothing(t *testing.T) {
	const quota = 1 << 20
	g, node, _ := startEntry(t, func(c *Config) {
		c.RequireTickets, c.Tickets, c.TicketQuota = true, &spendChecker{good: "good spend"}, quota
	})
	pub := wgKey(t)
	register := func() ([]byte, *wgreg.Pending) {
		req := &wgreg.Request{WGKey: pub, Time: time.Now(), Spend: []byte("good spend")}
		rand.Read(req.Nonce[:])
		return registerMsg(t, node, wgreg.RoleEntry, req)
	}
	r := dialRaw(t, node)
	msg, p := register()
	first := answerOf(t, r.send(t, msg), p)
	if first.Status != wgreg.AnswerOK || first.Allowance != quota {
		t.Fatalf("first registration: %+v; want OK with allowance %d", first, quota)
	}
	msg, p = register()
	a := answerOf(t, r.send(t, msg), p)
	if a.Status != wgreg.AnswerOK || a.Allowance != 2*quota || a.AddrV4 != first.AddrV4 {
		t.Fatalf("top-up: %+v; want OK, allowance %d, the same address %v", a, 2*quota, first.AddrV4)
	}
	replay := answerOf(t, dialRaw(t, node).send(t, msg), p)
	if replay.Status != wgreg.AnswerRefused || !strings.Contains(replay.Text, "replayed") {
		t.Fatalf("replayed top-up answered %+v", replay)
	}
	msg, p = register()
	if a := answerOf(t, r.send(t, msg), p); a.Allowance != 3*quota {
		t.Fatalf("allowance %d after a top-up, its replay and another top-up; want %d", a.Allowance, 3*quota)
	}
	if n := g.Peers(); n != 1 {
		t.Fatalf("%d peers, want 1", n)
	}
	// Unpaid peers are not metered: the answer says 0.
	g2, node2, _ := startEntry(t, nil)
	reg, s, err := wgreg.RegisterEntry(context.Background(), node2, wgKey(t), wgreg.Options{Rotation: testRotation})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if reg.Allowance != 0 || g2.Peers() != 1 {
		t.Fatalf("unmetered registration: allowance %d", reg.Allowance)
	}
}
