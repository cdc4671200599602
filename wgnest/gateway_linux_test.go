package wgnest

import (
	"context"
	"crypto/ed25519"
	"crypto/hpke"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/nym-go/nym/internal/leakcheck"
	"github.com/nym-go/nym/internal/netnstest"
	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/link"
	"github.com/nym-go/nym/wggate"
	"github.com/nym-go/nym/wgreg"
)

const gwRotation = 3

// gwKeys are one gateway's keys, as its node holds them.
type gwKeys struct {
	identity directory.Key
	link     link.KeyPair
	hpke     hpke.PrivateKey
	kemPub   []byte
}

func newGWKeys(t testing.TB) *gwKeys {
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
	priv, err := wgreg.NewPrivateKey(kem.Seed(), lk.Private)
	if err != nil {
		t.Fatal(err)
	}
	return &gwKeys{identity: directory.Key(pub), link: lk, hpke: priv, kemPub: kem.PublicKey()}
}

func (k *gwKeys) node(wg netip.AddrPort, entry bool) directory.Node {
	return directory.Node{
		Identity:     k.identity,
		NoiseKey:     directory.Key(k.link.Public),
		KEMKeys:      []directory.RotationKEMKey{{Rotation: gwRotation, Key: k.kemPub}},
		WGAddr:       wg.String(),
		MixnetAddr:   netip.AddrPortFrom(wg.Addr(), 1789).String(),
		HTTPAddr:     netip.AddrPortFrom(wg.Addr(), 8080).String(),
		Capabilities: directory.Capabilities{Entry: entry, Exit: !entry},
	}
}

// TestThroughTheGateways: the client side (wgreg's registrations, wgnest)
// against the gateways' real side (wggate's entry relay and exit device),
// each in its network namespace: the client registers at the entry
// directly and at the exit through it, and 1 MiB crosses the nested tunnel
// to a server on the exit's WireGuard TUN address.
func TestThroughTheGateways(t *testing.T) {
	leakcheck.Check(t)
	n, sfx := newNamespaces(t)

	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ek, xk := newGWKeys(t), newGWKeys(t)
	var entry, exit *wggate.Gateway
	exitTUN := "wgx" + sfx
	err := netnstest.DoNamed(n.gw, func() (err error) {
		if entry, err = wggate.New(wggate.Config{
			Role: wgreg.RoleEntry, Identity: ek.identity, Link: ek.link, Listen: netip.AddrPortFrom(gwLAN, 0), Logger: log,
			HPKEKey: func(uint64) (hpke.PrivateKey, error) { return ek.hpke, nil },
			// The relay opens its sockets on the device's goroutines,
			// which do not run in this namespace.
			DialUDP: func(ep netip.AddrPort) (c *net.UDPConn, err error) {
				err = netnstest.DoNamed(n.gw, func() (err error) {
					c, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(ep))
					return err
				})
				return c, err
			},
			DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
				err = netnstest.DoNamed(n.gw, func() (err error) {
					c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
					return err
				})
				return c, err
			},
		}); err != nil {
			return err
		}
		exit, err = wggate.New(wggate.Config{
			Role: wgreg.RoleExit, Identity: xk.identity, Link: xk.link, Listen: netip.AddrPortFrom(gwLAN, 0), Logger: log,
			HPKEKey: func(uint64) (hpke.PrivateKey, error) { return xk.hpke, nil },
			TUN:     exitTUN,
		})
		return err
	})
	if entry != nil {
		t.Cleanup(func() { entry.Close() })
	}
	if exit != nil {
		t.Cleanup(func() { exit.Close() })
	}
	if err != nil {
		t.Fatal(err)
	}
	entryNode := ek.node(netip.AddrPortFrom(gwLAN, entry.Port()), true)
	exitNode := xk.node(netip.AddrPortFrom(gwLAN, exit.Port()), false)
	top := &directory.Topology{Rotation: gwRotation, Entry: []directory.Node{entryNode}, Exit: []directory.Node{exitNode}}
	entry.Update(top)
	exit.Update(top)

	innerKey, outerKey := newKey(t), newKey(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var regE, regX wgreg.Registration
	// The registration link is dialled from the client's namespace.
	dial := func(ctx context.Context, network, addr string) (c net.Conn, err error) {
		err = netnstest.DoNamed(n.client, func() (err error) {
			c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
	regE, sess, err := wgreg.RegisterEntry(ctx, entryNode, outerKey.pub, wgreg.Options{Rotation: gwRotation, DialContext: dial, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	regX, err = sess.RegisterExit(ctx, exitNode, innerKey.pub)
	sess.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("entry gave %v %v, exit gave %v %v", regE.AddrV4, regE.AddrV6, regX.AddrV4, regX.AddrV6)

	clientTUN := "wgt" + sfx
	n.startNest(t, clientTUN, Config{
		InnerKey: innerKey.priv, OuterKey: outerKey.priv,
		Entry:   Peer{PublicKey: regE.GatewayKey, PSK: regE.PSK, Endpoint: netip.AddrPortFrom(gwLAN, entry.Port())},
		Exit:    Peer{PublicKey: regX.GatewayKey, PSK: regX.PSK, Endpoint: netip.AddrPortFrom(gwLAN, exit.Port())},
		OuterV4: regE.AddrV4.Addr(), OuterV6: regE.AddrV6.Addr(), Mark: testMark, Logger: log,
	}, regX.AddrV4, regX.AddrV6)
	// As nymvpn's routes do it, more simply: everything but the LAN (the
	// gateways) into the tunnel.
	run(t, "ip", "-n", n.client, "route", "add", "default", "dev", clientTUN)
	run(t, "ip", "-n", n.client, "-6", "route", "add", "default", "dev", clientTUN)
	if err := n.nest.WaitHandshake(ctx); err != nil {
		t.Fatal(err)
	}
	// The exit's own address on its TUN: the first of its range.
	n.transfer(t, wggate.DefaultExitRangeV4.Addr().Next(), 1<<20)
	if regX.AddrV6.IsValid() {
		n.transfer(t, wggate.DefaultExitRangeV6.Addr().Next(), 64<<10)
	}
	if st := n.nest.Stats(); st.Dropped != 0 {
		t.Errorf("dropped %d packets from the outer tunnel", st.Dropped)
	}
}
