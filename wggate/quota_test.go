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
