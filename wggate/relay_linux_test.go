package wggate

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nym-go/nym/internal/testpkt"
	"github.com/nym-go/nym/tun/ippkt"
)

// relayToLoopbackExit is a relay with one client and a real UDP socket on
// loopback as its exit.
func relayToLoopbackExit(t *testing.T) (*relay, *chanTUN, *net.UDPConn, netip.Addr) {
	t.Helper()
	exit, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { exit.Close() })
	exit.SetReadBuffer(4 << 20) // a burst of single datagrams fits too
	client := netip.MustParseAddr("10.2.0.2")
	m, err := newMetrics(nil, "entry")
	if err != nil {
		t.Fatal(err)
	}
	ctun := newChanTUN(1420, 1024, nil)
	owner := func(a netip.Addr) (peerKey, bool) { return peerKey{1}, a == client }
	r := newRelay(context.Background(), ctun, owner, time.Minute, 2, m, testLogger())
	t.Cleanup(r.Close)
	r.SetExits([]netip.AddrPort{exit.LocalAddr().(*net.UDPAddr).AddrPort()})
	return r, ctun, exit, client
}

// datagram i of a test burst: size bytes naming i.
func burstDatagram(i, size int) []byte {
	d := bytes.Repeat([]byte{byte(i)}, size)
	copy(d, fmt.Sprintf("datagram %d", i))
	return d
}

// TestRelaySendsRunsWithGSO: a device batch of one flow's equal-size
// datagrams (and a shorter last one) leaves for the exit as UDP GSO
// messages, and the exit gets every datagram, whole and in order. The
// exit's socket has UDP GRO on, so a GSO send arrives as one coalesced
// read; before the relay used UDP_SEGMENT every read was one datagram.
func TestRelaySendsRunsWithGSO(t *testing.T) {
	r, _, exit, client := relayToLoopbackExit(t)
	rc, err := exit.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	rc.Control(func(fd uintptr) {
		if err := unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_GRO, 1); err != nil {
			t.Skipf("no UDP GRO here: %v", err)
		}
	})
	exitEP := exit.LocalAddr().(*net.UDPAddr).AddrPort()
	const n, size = 100, 1372
	var want [][]byte
	var pkts [][]byte
	for i := range n {
		d := burstDatagram(i, size)
		if i == n-1 {
			d = d[:size/2]
		}
		want = append(want, d)
		pkts = append(pkts, testpkt.IPv4(t, client, exitEP.Addr(), ippkt.ProtoUDP, exitEP.Port(), d))
	}
	r.fromClients(pkts, 0)

	got, coalesced := readCoalesced(t, exit, n)
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("datagram %d: got %d bytes %q…, want %d bytes %q…", i, len(got[i]), got[i][:12], len(want[i]), want[i][:12])
		}
	}
	if coalesced == 0 {
		t.Fatal("no read at the exit was a GSO burst: the relay sent every datagram singly")
	}
	if got := counterValue(r.toExitPkts); got != n {
		t.Fatalf("relayed %v datagrams to the exit, want %d", got, n)
	}
}

// readCoalesced reads n datagrams from c (UDP GRO on), splitting the
// coalesced reads itself; it returns them and how many reads were bursts.
func readCoalesced(t *testing.T, c *net.UDPConn, n int) (got [][]byte, coalesced int) {
	t.Helper()
	buf, oob := make([]byte, 1<<16), make([]byte, 64)
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	for len(got) < n {
		m, oobn, _, _, err := c.ReadMsgUDP(buf, oob)
		if err != nil {
			t.Fatalf("after %d datagrams: %v", len(got), err)
		}
		seg := m
		if s := groSize(oob[:oobn]); s > 0 {
			seg = s
			coalesced++
		}
		for data := buf[:m]; len(data) > 0; {
			d := data[:min(seg, len(data))]
			data = data[len(d):]
			got = append(got, bytes.Clone(d))
		}
	}
	return got, coalesced
}

// TestRelaySplitsGROBursts: the exit sends a burst with UDP GSO (as
// wireguard-go's bind does); the relay, reading it coalesced, hands the
// device every datagram as its own IP/UDP packet to the client, in order.
func TestRelaySplitsGROBursts(t *testing.T) {
	r, ctun, exit, client := relayToLoopbackExit(t)
	exitEP := exit.LocalAddr().(*net.UDPAddr).AddrPort()
	// The client's first datagram opens the flow (and its socket).
	r.fromClient(testpkt.IPv4(t, client, exitEP.Addr(), ippkt.ProtoUDP, exitEP.Port(), []byte("hello")))
	buf := make([]byte, 64)
	exit.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, from, err := exit.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatal(err)
	}

	const n, size = 150, 1000
	var burst []byte
	for i := range n {
		burst = append(burst, burstDatagram(i, size)...)
	}
	burst = burst[:len(burst)-size/2] // the last one shorter
	// UDP GSO sends at most 64 segments a message.
	for off := 0; off < len(burst); off += 64 * size {
		chunk := burst[off:min(off+64*size, len(burst))]
		if _, _, err := exit.WriteMsgUDPAddrPort(chunk, putGSO(make([]byte, gsoOOBSize), size), from); err != nil {
			t.Skipf("UDP GSO send: %v", err)
		}
	}

	for i := 0; i < n; {
		var pkts []*[]byte
		select {
		case pkts = <-ctun.in:
		case <-time.After(20 * time.Second):
			t.Fatalf("%d of %d datagrams injected", i, n)
		}
		for _, pkt := range pkts {
			p, err := ippkt.Parse(*pkt)
			if err != nil {
				t.Fatal(err)
			}
			if p.Src != exitEP.Addr() || p.SrcPort != exitEP.Port() || p.Dst != client || p.Protocol != ippkt.ProtoUDP {
				t.Fatalf("packet %d: %+v", i, p)
			}
			want := burstDatagram(i, size)
			if i == n-1 {
				want = want[:size/2]
			}
			if got := (*pkt)[p.HeaderLen+8:]; !bytes.Equal(got, want) {
				t.Fatalf("packet %d: %d bytes %q…, want %d bytes %q…", i, len(got), got[:12], len(want), want[:12])
			}
			i++
		}
	}
}
