package exit_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/nym-go/nym/internal/poll"
	"github.com/nym-go/nym/ipr"
	"github.com/nym-go/nym/ipr/exit"
	"github.com/nym-go/nym/ipr/router"
	"github.com/nym-go/nym/mixnet/client"
	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/tun/ippkt"
)

// TestExitRoutesThroughNamespaces runs the exit's router for real:
//
//	test namespace: directory + nodes on loopback, the VPN test client and
//	  the router's mixnet client (all mixnet sockets)
//	ipx<pid>-e (exit): the router's TUN ipx<pid>t, nftables, forwarding;
//	  uplink ipx<pid>xi 198.51.100.1/24
//	ipx<pid>-i ("internet"): ipx<pid>ix 198.51.100.2/24, a UDP server that
//	  answers with the source address it saw; no route to the clients'
//	  10.0.0.0/16, so its answer only comes back through the exit's NAT.
//
// The router's mixnet client may live outside the exit namespace because
// only the TUN and the nftables rules have to be there (Config.InNetNS).
func TestExitRoutesThroughNamespaces(t *testing.T) {
	needRoot(t)
	pid := os.Getpid() % 1000000
	exitName, inetName := fmt.Sprintf("ipx%d-e", pid), fmt.Sprintf("ipx%d-i", pid)
	uplink, inetLink, tunName := fmt.Sprintf("ipx%dxi", pid), fmt.Sprintf("ipx%dix", pid), fmt.Sprintf("ipx%dt", pid)
	exitNS, inetNS := newNS(t, exitName), newNS(t, inetName)
	ip(t, "-n", exitName, "link", "add", uplink, "type", "veth", "peer", "name", inetLink, "netns", inetName)
	ip(t, "-n", exitName, "addr", "add", "198.51.100.1/24", "dev", uplink)
	ip(t, "-n", exitName, "link", "set", uplink, "up")
	ip(t, "-n", inetName, "addr", "add", "198.51.100.2/24", "dev", inetLink)
	ip(t, "-n", inetName, "link", "set", inetLink, "up")

	// The exit's LAN: another interface of the exit host, with a host on
	// it that records what reaches it.
	lanName, lanLink := fmt.Sprintf("ipx%d-l", pid), fmt.Sprintf("ipx%dxl", pid)
	lanNS := newNS(t, lanName)
	ip(t, "-n", exitName, "link", "add", lanLink, "type", "veth", "peer", "name", "lan0", "netns", lanName)
	ip(t, "-n", exitName, "addr", "add", "192.0.2.1/24", "dev", lanLink)
	ip(t, "-n", exitName, "link", "set", lanLink, "up")
	ip(t, "-n", lanName, "addr", "add", "192.0.2.50/24", "dev", "lan0")
	ip(t, "-n", lanName, "link", "set", "lan0", "up")
	ip(t, "-n", lanName, "route", "add", "default", "via", "192.0.2.1")
	lanHost := netip.MustParseAddrPort("192.0.2.50:7777")
	go serveWhoAmI(listenUDPIn(t, lanNS, lanHost))
	server := netip.MustParseAddrPort("198.51.100.2:7777")
	go serveWhoAmI(listenUDPIn(t, inetNS, server))

	dataDir := t.TempDir()
	routerID, err := exit.LoadOrCreateIdentity(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	mix := startMiniNet(t, routerID.Public)
	top, err := mix.Topology()
	if err != nil {
		t.Fatal(err)
	}
	if len(top.Exit) != 1 || top.Exit[0].RouterKey == nil || *top.Exit[0].RouterKey != directory.Key(routerID.Public) {
		t.Fatalf("exit does not announce the router key: %+v", top.Exit)
	}

	svc, err := exit.New(exit.Config{
		DataDir:      dataDir,
		DirectoryURL: mix.DirectoryURL,
		DirectoryKey: mix.DirectoryKey,
		Gateway:      directory.Key(mix.Exit.Identity()),
		Loopix:       &client.Loopix{}, // no mixing delay: a quick test
		TUNName:      tunName,
		Uplink:       uplink,
		InNetNS:      func(fn func() error) error { return inNS(exitNS, fn) },
		// Every refusal below is reported: no Info is held back.
		Router: router.Config{InfoInterval: time.Nanosecond},
		Logger: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	svcDone := make(chan error, 1)
	go func() { svcDone <- svc.Run(ctx) }()
	stopped := false
	stopService := func() error {
		if stopped {
			return nil
		}
		stopped = true
		stop()
		select {
		case err := <-svcDone:
			return err
		case <-time.After(20 * time.Second):
			return errors.New("service did not stop")
		}
	}
	t.Cleanup(func() {
		if err := stopService(); err != nil {
			t.Errorf("service: %v", err)
		}
	})
	waitUp(t, svc, svcDone)

	// The VPN client: a plain mixnet client speaking the ipr protocol.
	cctx, ccancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer ccancel()
	vpn, err := client.Connect(cctx, client.Config{DirectoryURL: mix.DirectoryURL, DirectoryKey: mix.DirectoryKey, Loopix: &client.Loopix{}, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("VPN client: %v", err)
	}
	defer vpn.Close()
	to := client.Address{Identity: [32]byte(*top.Exit[0].RouterKey), Gateway: top.Exit[0].Identity}

	connect := &ipr.Connect{RequestID: 7}
	rand.Read(connect.Nonce[:])
	send(t, cctx, vpn, to, connect, 10)
	ok := waitResponse[*ipr.ConnectOK](t, cctx, vpn)
	if ok.RequestID != 7 || !ipr.ClientNetV4.Contains(ok.Addrs.V4) || int(ok.MTU) != ipr.MaxIPPacket(svc.Client().ReplyCapacity()) {
		t.Fatalf("ConnectOK = %+v", ok)
	}

	src := netip.AddrPortFrom(ok.Addrs.V4, 40000)
	enc := ipr.NewBundleEncoder(1500) // SendWithReplySURBs fragments as needed
	enc.Reset(nil)
	if err := enc.Add(udp4(src, server, []byte("hello"))); err != nil {
		t.Fatal(err)
	}
	send(t, cctx, vpn, to, &ipr.DataUp{Seq: 0, Bundle: enc.Bytes()}, 20)

	data := waitResponse[*ipr.DataDown](t, cctx, vpn)
	pkts, bad := ipr.SplitBundle(data.Bundle, nil)
	if bad != 0 || len(pkts) != 1 {
		t.Fatalf("downstream bundle: %d packets, %d malformed", len(pkts), bad)
	}
	p, err := ippkt.Parse(pkts[0])
	if err != nil || p.Protocol != ippkt.ProtoUDP || p.Src != server.Addr() || p.Dst != ok.Addrs.V4 || p.DstPort != src.Port() {
		t.Fatalf("reply packet %+v (%v)", p, err)
	}
	// The internet saw the exit's uplink address, not the client's.
	if got := string(pkts[0][p.HeaderLen+8 : p.TotalLen]); !strings.HasPrefix(got, "198.51.100.1:") {
		t.Fatalf("internet saw %q, want the exit's address 198.51.100.1", got)
	}
	// The router counts an upstream packet after writing it to the TUN, so
	// the answer can be back before the count moves: wait for it.
	poll.Until(t, 20*time.Second, "one packet counted each way", func() bool {
		st := svc.Stats().Router
		return st.PacketsUp >= 1 && st.PacketsDown >= 1
	})
	if st := svc.Stats().Router; st.PacketsUp != 1 || st.PacketsDown != 1 {
		t.Errorf("router stats: up %d, down %d", st.PacketsUp, st.PacketsDown)
	}

	// A private destination is refused, and the client hears why.
	private := netip.MustParseAddrPort("192.168.1.1:53")
	enc.Reset(nil)
	if err := enc.Add(udp4(src, private, []byte("x"))); err != nil {
		t.Fatal(err)
	}
	send(t, cctx, vpn, to, &ipr.DataUp{Seq: 1, Bundle: enc.Bytes()}, 5)
	info := waitResponse[*ipr.Info](t, cctx, vpn)
	if info.Code != ipr.InfoPolicyRefused || info.Dest != private || info.Proto != ippkt.ProtoUDP {
		t.Fatalf("Info = %+v, want a policy refusal of %v", info, private)
	}

	// Issue 10: the exit's LAN, behind an interface that is not the
	// uplink, is out of reach: the packet is refused, and the client hears
	// an ICMP error instead of the LAN host's answer.
	enc.Reset(nil)
	if err := enc.Add(udp4(src, lanHost, []byte("lan?"))); err != nil {
		t.Fatal(err)
	}
	send(t, cctx, vpn, to, &ipr.DataUp{Seq: 2, Bundle: enc.Bytes()}, 5)
	refusal := waitResponse[*ipr.DataDown](t, cctx, vpn)
	pkts, _ = ipr.SplitBundle(refusal.Bundle, nil)
	if len(pkts) != 1 {
		t.Fatalf("%d packets in the refusal bundle", len(pkts))
	}
	if p, err := ippkt.Parse(pkts[0]); err != nil || p.Protocol != ippkt.ProtoICMP || p.Dst != ok.Addrs.V4 {
		t.Fatalf("answer to a packet for the exit's LAN: %+v (%v), want an ICMP error", p, err)
	}
	// A NAT64 address embedding a private IPv4 one is refused as private.
	nat64 := netip.MustParseAddrPort("[64:ff9b::c0a8:101]:53")
	enc.Reset(nil)
	if err := enc.Add(udp6(netip.AddrPortFrom(ok.Addrs.V6, 40000), nat64, []byte("x"))); err != nil {
		t.Fatal(err)
	}
	send(t, cctx, vpn, to, &ipr.DataUp{Seq: 3, Bundle: enc.Bytes()}, 5)
	if info := waitResponse[*ipr.Info](t, cctx, vpn); info.Code != ipr.InfoPolicyRefused || info.Dest != nat64 {
		t.Fatalf("Info = %+v, want a policy refusal of %v", info, nat64)
	}

	// Issue 10: when the session ends, its address's conntrack entries
	// go (the next holder of the address must not inherit its flows).
	if n := conntrackFrom(t, exitNS, ok.Addrs.V4); n == 0 {
		t.Fatalf("no conntrack entry from %v after its UDP exchange", ok.Addrs.V4)
	}
	send(t, cctx, vpn, to, &ipr.Disconnect{}, 1)
	poll.Until(t, 20*time.Second, "the released address's conntrack entries to go", func() bool {
		return conntrackFrom(t, exitNS, ok.Addrs.V4) == 0
	})

	// On stop the TUN goes and forwarding is put back.
	if err := stopService(); err != nil {
		t.Fatalf("service: %v", err)
	}
	if out, err := exec.Command("ip", "-n", exitName, "link", "show", tunName).CombinedOutput(); err == nil {
		t.Errorf("TUN %s still there after stop: %s", tunName, out)
	}
	out, err := exec.Command("ip", "netns", "exec", exitName, "cat", "/proc/sys/net/ipv4/ip_forward").Output()
	if err != nil || strings.TrimSpace(string(out)) != "0" {
		t.Errorf("ip_forward after stop = %q (%v), want 0", out, err)
	}
}

// listenUDPIn opens a UDP socket at addr in ns, closed when the test ends.
func listenUDPIn(t *testing.T, ns netns.NsHandle, addr netip.AddrPort) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	if err := inNS(ns, func() (err error) {
		c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
		return err
	}); err != nil {
		t.Fatalf("UDP socket at %v: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// serveWhoAmI answers each datagram with the address it came from.
func serveWhoAmI(c *net.UDPConn) {
	buf := make([]byte, 2048)
	for {
		_, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		c.WriteToUDPAddrPort([]byte(from.String()), from)
	}
}

func waitUp(t *testing.T, svc *exit.Service, done <-chan error) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-done:
			t.Fatalf("service stopped: %v", err)
		default:
		}
		if svc.Router() != nil {
			return
		}
	}
	t.Fatal("service not up after 30 s")
}

// conntrackFrom counts the conntrack entries in ns whose original source is
// a.
func conntrackFrom(t *testing.T, ns netns.NsHandle, a netip.Addr) int {
	t.Helper()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_NETFILTER)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	flows, err := h.ConntrackTableList(netlink.ConntrackTable, unix.AF_INET)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range flows {
		if src, ok := netip.AddrFromSlice(f.Forward.SrcIP); ok && src.Unmap() == a {
			n++
		}
	}
	return n
}
