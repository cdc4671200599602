package tun

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/nym-go/nym/internal/leakcheck"
	"github.com/nym-go/nym/tun/ippkt"
)

const testTUN = "nymtest0" // unique inside each test's own namespace

// newKernelInNetns creates a kernel TUN in namespace ns, gives it prefix
// (ip addr syntax; IPv6 without duplicate address detection) and brings it
// up. The device is closed when the test ends, before ns is deleted.
func newKernelInNetns(t testing.TB, ns string, mtu int, prefixes ...string) KernelDevice {
	t.Helper()
	var dev KernelDevice
	err := inNetns(ns, func() (err error) {
		dev, err = CreateKernel(testTUN, mtu)
		return err
	})
	if err != nil {
		t.Fatalf("CreateKernel in %s: %v", ns, err)
	}
	t.Cleanup(func() { dev.Close() })
	for _, p := range prefixes {
		args := []string{"-n", ns, "addr", "add", p, "dev", dev.Name()}
		if strings.Contains(p, ":") {
			args = append(args, "nodad")
		}
		ipCmd(t, args...)
	}
	ipCmd(t, "-n", ns, "link", "set", dev.Name(), "up")
	return dev
}

func TestKernelDevice(t *testing.T) {
	leakcheck.Check(t)
	requireRoot(t)
	ns := newNetns(t, "a")
	dev := newKernelInNetns(t, ns, 1400)
	if dev.Name() != testTUN || dev.MTU() != 1400 || dev.BatchSize() != 128 {
		t.Errorf("name %q, MTU %d, batch %d; want %s, 1400, 128", dev.Name(), dev.MTU(), dev.BatchSize(), testTUN)
	}
	var link netlink.Link
	if err := inNetns(ns, func() (err error) { link, err = netlink.LinkByName(testTUN); return err }); err != nil {
		t.Fatal(err)
	}
	if a := link.Attrs(); a.Index != dev.Index() || a.MTU != 1400 || a.GSOMaxSegs > uint32(dev.BatchSize()) {
		t.Errorf("link index %d MTU %d gso_max_segs %d; device index %d", a.Index, a.MTU, a.GSOMaxSegs, dev.Index())
	}

	err := inNetns(ns, func() error {
		if d, err := CreateKernel("a-name-too-long-for-linux", 1400); err == nil {
			d.Close()
			return errors.New("CreateKernel accepted a 25-byte name")
		}
		if d, err := CreateKernel("nymtest1", 20); err == nil {
			d.Close()
			return errors.New("CreateKernel accepted MTU 20")
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}

	bufs, sizes := NewBatch(dev)
	if _, err := dev.Read(bufs[:64], sizes); !errors.Is(err, ErrShortBuffer) {
		t.Errorf("Read into 64 buffers: %v, want ErrShortBuffer", err)
	}
	readErr := make(chan error, 1)
	go func() {
		for {
			// The interface may send IPv6 router solicitations: skip them.
			if _, err := dev.Read(bufs, sizes); err != nil {
				readErr <- err
				return
			}
		}
	}()
	time.Sleep(50 * time.Millisecond)
	if err := dev.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-readErr:
		if !errors.Is(err, os.ErrClosed) {
			t.Errorf("pending Read: %v, want os.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock Read")
	}
	if err := dev.Write([][]byte{make([]byte, 40)}); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Write after Close: %v, want os.ErrClosed", err)
	}
	if err := dev.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestKernelUDPRoundTrip sends a datagram from a socket into the TUN, reads
// it from the Device, writes a crafted answer back and expects the socket
// to receive it: packets flow both ways, checksums and all.
func TestKernelUDPRoundTrip(t *testing.T) {
	leakcheck.Check(t)
	requireRoot(t)
	tests := []struct {
		name, prefix string
		local, peer  netip.AddrPort
	}{
		{"IPv4", "192.0.2.1/24", netip.MustParseAddrPort("192.0.2.1:0"), netip.MustParseAddrPort("192.0.2.77:5555")},
		{"IPv6", "2001:db8::1/64", netip.MustParseAddrPort("[2001:db8::1]:0"), netip.MustParseAddrPort("[2001:db8::77]:5555")},
	}
	ns := newNetns(t, "a")
	dev := newKernelInNetns(t, ns, 1400, tests[0].prefix, tests[1].prefix)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var conn *net.UDPConn
			err := inNetns(ns, func() (err error) {
				conn, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(tt.local))
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			local := conn.LocalAddr().(*net.UDPAddr).AddrPort()
			if _, err := conn.WriteToUDPAddrPort([]byte("ping"), tt.peer); err != nil {
				t.Fatalf("send into the TUN: %v", err)
			}

			out, err := readUntil(ctx, dev, func(p ippkt.Packet, _ []byte) bool {
				return p.Protocol == ippkt.ProtoUDP && p.HasPorts && p.Dst == tt.peer.Addr() && p.DstPort == tt.peer.Port()
			})
			if err != nil {
				t.Fatalf("read the datagram from the device: %v", err)
			}
			p, _ := ippkt.Parse(out)
			if got := netip.AddrPortFrom(p.Src, p.SrcPort); got != local || string(out[p.HeaderLen+8:p.TotalLen]) != "ping" {
				t.Fatalf("read %q from %v, want \"ping\" from %v", out[p.HeaderLen+8:p.TotalLen], got, local)
			}

			reply := udpPacket(tt.peer, local, []byte("pong!"))
			sent := bytes.Clone(reply)
			if err := dev.Write([][]byte{reply}); err != nil {
				t.Fatalf("write the reply: %v", err)
			}
			if !bytes.Equal(reply, sent) {
				t.Error("Write modified the caller's packet")
			}
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 100)
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatalf("socket did not receive the reply: %v", err)
			}
			if string(buf[:n]) != "pong!" || from != tt.peer {
				t.Errorf("socket got %q from %v, want \"pong!\" from %v", buf[:n], from, tt.peer)
			}
		})
	}
}

// kernelPair makes two namespaces, each with a kernel TUN (192.0.2.1 and
// 192.0.2.2), and pumps packets between the devices like a
// wire. It returns a TCP connection from a to a listener in b, the
// accepted end, the pump statistics and the namespaces.
func kernelPair(t testing.TB, mtu int) (client, server net.Conn, ab, ba *pumpStats, nsA, nsB string) {
	t.Helper()
	nsA, nsB = newNetns(t, "a"), newNetns(t, "b")
	devA := newKernelInNetns(t, nsA, mtu, "192.0.2.1/24")
	devB := newKernelInNetns(t, nsB, mtu, "192.0.2.2/24")
	if err := devA.Write([][]byte{make([]byte, 20)}); err == nil {
		t.Error("Write accepted a packet of IP version 0")
	}
	ab, ba = connect(t, devA, devB)

	var ln net.Listener
	if err := inNetns(nsB, func() (err error) { ln, err = net.Listen("tcp4", "192.0.2.2:5201"); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	err := inNetns(nsA, func() (err error) {
		client, err = net.DialTimeout("tcp4", "192.0.2.2:5201", 10*time.Second)
		return err
	})
	if err != nil {
		t.Fatalf("dial through the TUN pair: %v", err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server, ab, ba, nsA, nsB
}

// TestKernelBulkGSO streams TCP both ways between two kernel TUNs. The
// kernel hands the device TSO super-packets, which Read must return split
// into MTU-sized packets, many per call; Write coalesces them again (GRO),
// so the receiving kernel counts fewer packets than were written.
func TestKernelBulkGSO(t *testing.T) {
	leakcheck.Check(t)
	requireRoot(t)
	client, server, ab, ba, _, nsB := kernelPair(t, 1400)
	const size = 32 << 20
	for _, dir := range []struct {
		name     string
		from, to net.Conn
		stats    *pumpStats
	}{{"upload", client, server, ab}, {"download", server, client, ba}} {
		readsBefore, pktsBefore := dir.stats.reads.Load(), dir.stats.packets.Load()
		start := time.Now()
		if err := transfer(dir.from, dir.to, size); err != nil {
			t.Fatalf("%s: %v", dir.name, err)
		}
		elapsed := time.Since(start)
		reads, pkts := dir.stats.reads.Load()-readsBefore, dir.stats.packets.Load()-pktsBefore
		t.Logf("%s: %d MiB in %v (%.2f Gbit/s), %d packets in %d reads (%.1f per read, max %d)",
			dir.name, size>>20, elapsed.Round(time.Millisecond), float64(size)*8/elapsed.Seconds()/1e9,
			pkts, reads, float64(pkts)/float64(reads), dir.stats.maxPerRead.Load())
	}
	if ab.maxPerRead.Load() < 2 || ba.maxPerRead.Load() < 2 {
		t.Errorf("at most %d and %d packets per Read under bulk load; want GSO super-packets split into several",
			ab.maxPerRead.Load(), ba.maxPerRead.Load())
	}
	if rx := rxPackets(t, nsB); rx >= ab.packets.Load() {
		t.Errorf("kernel in b received %d packets of the %d written: no GRO coalescing", rx, ab.packets.Load())
	} else {
		t.Logf("GRO: kernel in b received %d packets for %d written", rx, ab.packets.Load())
	}
}

// TestKernelSmallMTU: at MTU 300 a 64 KiB super-packet would have 252
// segments, more than one Read can return; CreateKernel lowers the link's
// gso_max_segs so none is ever cut.
func TestKernelSmallMTU(t *testing.T) {
	leakcheck.Check(t)
	requireRoot(t)
	client, server, ab, _, nsA, _ := kernelPair(t, 300)
	retransBefore := tcpRetransSegs(t, nsA)
	if err := transfer(client, server, 8<<20); err != nil {
		t.Fatal(err)
	}
	if m := ab.maxPerRead.Load(); m > 128 || m < 2 {
		t.Errorf("up to %d packets per Read, want 2..128", m)
	}
	t.Logf("max %d per read, %d packets, %d retransmitted", ab.maxPerRead.Load(), ab.packets.Load(), tcpRetransSegs(t, nsA)-retransBefore)
	// A cut super-packet loses its tail, which TCP must then resend.
	if retrans := tcpRetransSegs(t, nsA) - retransBefore; retrans*100 > ab.packets.Load() {
		t.Errorf("%d of %d segments retransmitted: super-packets were cut", retrans, ab.packets.Load())
	}
}

// tcpRetransSegs is the count of TCP segments retransmitted in ns.
func tcpRetransSegs(t testing.TB, ns string) int64 {
	t.Helper()
	var snmp []byte
	// /proc/thread-self/net, unlike /proc/self/net, follows the calling
	// thread's namespace.
	err := inNetns(ns, func() (err error) { snmp, err = os.ReadFile("/proc/thread-self/net/snmp"); return err })
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, line := range strings.Split(string(snmp), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 || fields[0] != "Tcp:" {
			continue
		}
		if names == nil {
			names = fields
			continue
		}
		for i, name := range names {
			if name == "RetransSegs" && i < len(fields) {
				n, err := strconv.ParseInt(fields[i], 10, 64)
				if err != nil {
					t.Fatalf("RetransSegs %q: %v", fields[i], err)
				}
				return n
			}
		}
	}
	t.Fatalf("no Tcp RetransSegs in /proc/net/snmp of %s", ns)
	return 0
}

// transfer sends n bytes from one end and checks they all arrive. TCP's
// checksums guard the content; generating random data would only add CPU
// load to the measurement.
func transfer(from, to net.Conn, n int64) error {
	deadline := time.Now().Add(2 * time.Minute)
	from.SetDeadline(deadline)
	to.SetDeadline(deadline)
	sent := make(chan error, 1)
	go func() {
		chunk := make([]byte, 1<<20)
		var err error
		for left := n; left > 0 && err == nil; left -= int64(len(chunk)) {
			_, err = from.Write(chunk[:min(left, int64(len(chunk)))])
		}
		sent <- err
	}()
	got, err := io.CopyN(io.Discard, to, n)
	if err != nil {
		return fmt.Errorf("received %d of %d bytes: %w", got, n, err)
	}
	return <-sent
}

// rxPackets is the receive packet count of the test TUN in ns.
func rxPackets(t testing.TB, ns string) int64 {
	t.Helper()
	out, err := exec.Command("ip", "-n", ns, "-s", "-j", "link", "show", testTUN).Output()
	if err != nil {
		t.Fatalf("ip link show: %v", err)
	}
	var links []struct {
		Stats struct {
			RX struct {
				Packets int64 `json:"packets"`
			} `json:"rx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 {
		t.Fatalf("parse ip -j output %q: %v", out, err)
	}
	return links[0].Stats.RX.Packets
}

// BenchmarkKernelDevice measures TCP throughput across two kernel TUNs
// joined by Read/Write pumps (one MiB per op): the device plumbing's
// ceiling on this machine, kernel TCP included.
func BenchmarkKernelDevice(b *testing.B) {
	requireRoot(b)
	client, server, ab, _, _, _ := kernelPair(b, 1400)
	b.SetBytes(1 << 20)
	b.ResetTimer()
	if err := transfer(client, server, int64(b.N)<<20); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(ab.packets.Load())/float64(ab.reads.Load()), "pkts/read")
}

// TestWireGuardTUN drives a kernel TUN as wireguard-go does, through
// WireGuardTUN: a datagram read at an offset, an answer written from
// behind headroom reaches the socket, and Close ends Events and a pending
// Read.
func TestWireGuardTUN(t *testing.T) {
	leakcheck.Check(t)
	requireRoot(t)
	ns := newNetns(t, "a")
	dev, ok := WireGuardTUN(newKernelInNetns(t, ns, 1400, "192.0.2.1/24"))
	if !ok {
		t.Fatal("a kernel TUN is not a wireguard-go TUN")
	}
	if name, _ := dev.Name(); name != testTUN || dev.BatchSize() != 128 {
		t.Errorf("name %q batch %d", name, dev.BatchSize())
	}
	var conn *net.UDPConn
	if err := inNetns(ns, func() (err error) {
		conn, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1)})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	local, peer := conn.LocalAddr().(*net.UDPAddr).AddrPort(), netip.MustParseAddrPort("192.0.2.77:5555")
	if _, err := conn.WriteToUDPAddrPort([]byte("ping"), peer); err != nil {
		t.Fatal(err)
	}
	const offset = 16 // wireguard-go's
	bufs, sizes := make([][]byte, dev.BatchSize()), make([]int, dev.BatchSize())
	for i := range bufs {
		bufs[i] = make([]byte, offset+MaxPacketSize)
	}
	for found := false; !found; {
		n, err := dev.Read(bufs, sizes, offset)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			p, err := ippkt.Parse(bufs[i][offset : offset+sizes[i]])
			found = found || err == nil && p.Protocol == ippkt.ProtoUDP && p.Dst == peer.Addr() && p.DstPort == peer.Port()
		}
	}
	reply := append(make([]byte, offset), udpPacket(peer, local, []byte("pong!"))...)
	if _, err := dev.Write([][]byte{reply}, offset); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 100)
	if n, err := conn.Read(buf); err != nil || string(buf[:n]) != "pong!" {
		t.Fatalf("socket read %q, %v", buf[:n], err)
	}

	readErr := make(chan error, 1)
	go func() {
		for {
			if _, err := dev.Read(bufs, sizes, offset); err != nil {
				readErr <- err
				return
			}
		}
	}()
	if err := dev.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-readErr:
		if !errors.Is(err, os.ErrClosed) {
			t.Errorf("pending Read: %v, want os.ErrClosed", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Close did not unblock Read")
	}
	if _, open := <-dev.Events(); open {
		t.Error("Events still open after Close")
	}
}
