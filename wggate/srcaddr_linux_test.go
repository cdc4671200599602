package wggate

import (
	"context"
	"crypto/rand"
	"io"
	"net/netip"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/tun/netstack"

	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/tun"
	"github.com/nym-go/nym/wgnest"
	"github.com/nym-go/nym/wgreg"
)

// TestExitOnOtherAddressAnswersFromIt: an exit whose WireGuard address is
// not the host's default source address (here 127.0.0.2; Linux routes all
// of 127.0.0.0/8 to lo, and answers from 127.0.0.1 by default) answers the
// entry from the address the entry reached. The entry's relay socket is
// connected to the exit's announced address and drops anything else:
// before the fix the exit answered from 127.0.0.1 and the nested client's
// inner handshake never completed.
func TestExitOnOtherAddressAnswersFromIt(t *testing.T) {
	stack, inet := fastNest(t, netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2"))
	ln, err := inet.ListenTCPAddrPort(netip.AddrPortFrom(exitInternet, 7))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := stack.DialContext(ctx, "tcp", netip.AddrPortFrom(exitInternet, 7).String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	msg := make([]byte, 64<<10)
	rand.Read(msg)
	go c.Write(msg)
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("echo through the nested tunnel: %v", err)
	}
	if string(got) != string(msg) {
		t.Fatal("echo differs")
	}
}

// BenchmarkFastModeDownload measures a download from the exit's userspace
// internet through a nested client, entry and exit on loopback: with the
// gateways on one address each (addrBind) and on every address
// (wireguard-go's StdNetBind, with UDP GSO and GRO).
func BenchmarkFastModeDownload(b *testing.B) {
	for _, bc := range []struct{ name, entry, exit string }{
		{"addr", "127.0.0.1", "127.0.0.2"},
		{"any", "0.0.0.0", "0.0.0.0"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			stack, inet := fastNest(b, netip.MustParseAddr(bc.entry), netip.MustParseAddr(bc.exit))
			ln, err := inet.ListenTCPAddrPort(netip.AddrPortFrom(exitInternet, 9))
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			chunk := make([]byte, 1<<20)
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					go func() {
						defer c.Close()
						for {
							if _, err := c.Write(chunk); err != nil {
								return
							}
						}
					}()
				}
			}()
			c, err := stack.DialContext(context.Background(), "tcp", netip.AddrPortFrom(exitInternet, 9).String())
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			b.SetBytes(int64(len(chunk)))
			b.ResetTimer()
			for range b.N {
				if _, err := io.ReadFull(c, chunk); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// fastNest brings up an entry and an exit listening on entryAddr and
// exitAddr (announced as 127.0.0.1 when unspecified) and a client's nested
// tunnel through them, registered as nymvpn's fast mode does; it returns
// the client's stack and the exit's internet.
func fastNest(t testing.TB, entryAddr, exitAddr netip.Addr) (*tun.Net, *netstack.Net) {
	t.Helper()
	entry, entryNode, _ := startEntry(t, func(c *Config) { c.Listen = netip.AddrPortFrom(entryAddr, 0) })
	exit, exitNode, inet := startExit(t, exitAddr, nil)
	topo := &directory.Topology{Rotation: testRotation, Entry: []directory.Node{entryNode}, Exit: []directory.Node{exitNode}}
	entry.Update(topo)
	exit.Update(topo)

	// Minutes, for a loaded machine: a few round trips and two handshakes
	// on loopback.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	outerPriv, outerPub := newKey()
	innerPriv, innerPub := newKey()
	regE, sess, err := wgreg.RegisterEntry(ctx, entryNode, outerPub, wgreg.Options{Rotation: testRotation, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	regX, err := sess.RegisterExit(ctx, exitNode, innerPub)
	if err != nil {
		t.Fatal(err)
	}
	dev, stack, err := tun.CreateNetstack([]netip.Addr{regX.AddrV4.Addr()}, nil, wgnest.DefaultInnerMTU)
	if err != nil {
		t.Fatal(err)
	}
	entryEP, _ := entryNode.WGAddrPort()
	exitEP, _ := exitNode.WGAddrPort()
	nest, err := wgnest.New(wgnest.Config{
		TUN:      dev,
		InnerKey: innerPriv, OuterKey: outerPriv,
		Entry:   wgnest.PeerOf(regE, entryEP),
		Exit:    wgnest.PeerOf(regX, exitEP),
		OuterV4: regE.AddrV4.Addr(), OuterV6: regE.AddrV6.Addr(),
		Logger: testLogger(),
	})
	if err != nil {
		dev.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { nest.Close() })
	hctx, hcancel := context.WithTimeout(ctx, time.Minute)
	defer hcancel()
	if err := nest.WaitHandshake(hctx); err != nil {
		t.Fatalf("nested handshake through an exit on %s: %v", exitAddr, err)
	}
	return stack, inet
}
