package wggate

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
)

// openAddrBind opens an addrBind on a free port of addr; its receive
// function and endpoint.
func openAddrBind(t *testing.T, addr string) (*addrBind, conn.ReceiveFunc, netip.AddrPort) {
	t.Helper()
	a := netip.MustParseAddr(addr)
	b := newAddrBind(a, testLogger())
	fns, port, err := b.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b, fns[0], netip.AddrPortFrom(a, port)
}

// received is one datagram as the device got it.
type received struct {
	data []byte
	from netip.AddrPort
}

// receiveAll calls recv as the device does (IdealBatchSize buffers of
// device.MaxMessageSize) until n datagrams came; it returns them and the
// most one call returned.
func receiveAll(t *testing.T, b *addrBind, recv conn.ReceiveFunc, n int) ([]received, int) {
	t.Helper()
	pkts := make([][]byte, conn.IdealBatchSize)
	for i := range pkts {
		pkts[i] = make([]byte, device.MaxMessageSize)
	}
	sizes, eps := make([]int, len(pkts)), make([]conn.Endpoint, len(pkts))
	b.mu.Lock()
	b.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	b.mu.Unlock()
	var got []received
	most := 0
	for len(got) < n {
		k, err := recv(pkts, sizes, eps)
		if err != nil {
			t.Fatalf("after %d of %d datagrams: %v", len(got), n, err)
		}
		most = max(most, k)
		for i := range k {
			got = append(got, received{bytes.Clone(pkts[i][:sizes[i]]), eps[i].(*conn.StdNetEndpoint).AddrPort})
		}
	}
	return got, most
}

func udpGRO(t *testing.T) {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if gso, gro := udpOffload(c); !gso || !gro {
		t.Skipf("no UDP GSO/GRO here (gso %v, gro %v)", gso, gro)
	}
}

// TestAddrBindSendsWithGSO: a door's batch to one peer leaves as UDP GSO
// messages: a receiving socket with UDP GRO on loopback (which does no GRO
// of its own) reads coalesced bursts, every datagram whole and in order.
// Before, addrBind sent each datagram singly and no read was a burst.
func TestAddrBindSendsWithGSO(t *testing.T) {
	udpGRO(t)
	door, _, _ := openAddrBind(t, "127.0.0.1")
	peer, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	peer.SetReadBuffer(4 << 20)
	udpOffload(peer)
	ep, err := door.ParseEndpoint(peer.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	want := mixedBatch()
	if err := door.Send(want, ep); err != nil {
		t.Fatal(err)
	}
	got, coalesced := readCoalesced(t, peer, len(want))
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("datagram %d: %d bytes %q, want %d bytes %q", i, len(got[i]), got[i][:min(12, len(got[i]))], len(want[i]), want[i][:min(12, len(want[i]))])
		}
	}
	if coalesced == 0 {
		t.Fatal("no read was a GSO burst: the door sent every datagram singly")
	}
}

// mixedBatch is datagrams as a device's batch could hold them: a run of
// 100 of 1372 bytes (two GSO messages) whose last is shorter, then runs
// of other sizes, singles, a longer one after a shorter, one byte.
func mixedBatch() [][]byte {
	var b [][]byte
	for i := range 100 {
		d := burstDatagram(i, 1372)
		if i == 99 {
			d = d[:686]
		}
		b = append(b, d)
	}
	for i, size := range []int{1000, 1000, 1000, 500, 1200, 1200, 700, 700, 700, 700, 1, 1400, 1400, 20} {
		b = append(b, burstDatagram(100+i, max(size, 12))[:size])
	}
	return b
}

// TestAddrBindReceivesWithGRO: two senders' GSO batches to a door on
// loopback arrive coalesced, and the receive splits every burst into the
// device's buffers: every datagram whole, in order, from its own sender.
// Before, the door's socket had UDP GRO off: the kernel split each burst
// and every read was one datagram.
func TestAddrBindReceivesWithGRO(t *testing.T) {
	udpGRO(t)
	door, recv, doorEP := openAddrBind(t, "127.0.0.1")
	a, _, aEP := openAddrBind(t, "127.0.0.1")
	c, _, cEP := openAddrBind(t, "127.0.0.1")
	door.mu.Lock()
	rc, err := door.c.SyscallConn()
	door.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	gro := 0
	rc.Control(func(fd uintptr) { gro, err = unix.GetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_GRO) })
	if err != nil || gro == 0 {
		t.Fatalf("the door's socket has UDP GRO off (%d, %v)", gro, err)
	}
	ep, err := door.ParseEndpoint(doorEP.String())
	if err != nil {
		t.Fatal(err)
	}
	fromA, fromC := mixedBatch(), mixedBatch()[90:]
	if err := a.Send(fromA, ep); err != nil {
		t.Fatal(err)
	}
	if err := c.Send(fromC, ep); err != nil {
		t.Fatal(err)
	}
	got, most := receiveAll(t, door, recv, len(fromA)+len(fromC))
	var gotA, gotC [][]byte
	for i, r := range got {
		switch r.from {
		case aEP:
			gotA = append(gotA, r.data)
		case cEP:
			gotC = append(gotC, r.data)
		default:
			t.Fatalf("datagram %d from %v, want %v or %v", i, r.from, aEP, cEP)
		}
	}
	for _, s := range []struct {
		name      string
		got, want [][]byte
	}{{"a", gotA, fromA}, {"c", gotC, fromC}} {
		if len(s.got) != len(s.want) {
			t.Fatalf("%s: %d datagrams, want %d", s.name, len(s.got), len(s.want))
		}
		for i := range s.want {
			if !bytes.Equal(s.got[i], s.want[i]) {
				t.Fatalf("%s: datagram %d: %d bytes %q, want %d bytes %q", s.name, i, len(s.got[i]), s.got[i][:min(12, len(s.got[i]))], len(s.want[i]), s.want[i][:min(12, len(s.want[i]))])
			}
		}
	}
	// With GRO at most 2 messages are read a call: more datagrams than
	// that is a burst split here.
	if most <= 2 {
		t.Fatalf("no receive call returned more than %d datagrams: nothing was coalesced", most)
	}
}

// groOOB is a control message as the kernel writes it for a UDP GRO read
// of segments of size bytes.
func groOOB(size int32) []byte {
	oob := make([]byte, unix.CmsgSpace(4))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level, h.Type = unix.SOL_UDP, unix.UDP_GRO
	h.SetLen(unix.CmsgLen(4))
	binary.NativeEndian.PutUint32(oob[unix.CmsgLen(0):], uint32(size))
	return oob
}

// FuzzBindSplit: whatever segment sizes the control messages claim (0,
// negative, larger than the read, 1 byte in a 64 KiB read), the split
// never panics or loops, fills at most the device's slots, and every
// datagram it hands over is the next piece of its message.
func FuzzBindSplit(f *testing.F) {
	f.Add(int32(1000), uint16(1000*64), int32(1372), uint16(1372*3+5), uint8(128))
	f.Add(int32(0), uint16(100), int32(-5), uint16(70), uint8(128))
	f.Add(int32(1), uint16(65535), int32(65535), uint16(10), uint8(128))
	f.Add(int32(100000), uint16(3), int32(1), uint16(0), uint8(1))
	f.Add(int32(7), uint16(700), int32(7), uint16(700), uint8(3))
	f.Fuzz(func(t *testing.T, seg1 int32, n1 uint16, seg2 int32, n2 uint16, slots uint8) {
		n := max(int(slots), 1)
		r := newBindReader(nil, true, n)
		pkts := make([][]byte, n)
		for i := range pkts {
			pkts[i] = make([]byte, device.MaxMessageSize)
		}
		at := n - max(1, n/maxGSOSegments)
		src := netip.MustParseAddrPort("192.0.2.1:51820")
		var want [][]byte // what each read message held
		for i, m := range []struct {
			seg int32
			n   uint16
		}{{seg1, n1}, {seg2, n2}} {
			if at+i >= n {
				break
			}
			data := pkts[at+i][:m.n]
			for j := range data {
				data[j] = byte(2*j + i) // message i's bytes are of i's parity
			}
			want = append(want, bytes.Clone(data))
			r.ms[at+i] = ipv4.Message{Buffers: [][]byte{pkts[at+i]}, OOB: groOOB(m.seg), Addr: net.UDPAddrFromAddrPort(src), N: int(m.n), NN: unix.CmsgSpace(4)}
		}
		sizes, eps := make([]int, n), make([]conn.Endpoint, n)
		out := r.split(pkts, sizes, eps, at, at+len(want))
		if out < 0 || out > n {
			t.Fatalf("split into %d slots of %d", out, n)
		}
		// The datagrams, joined in order, are a prefix of each message's
		// data in turn (the rest of a burst with no free slot is dropped).
		k, whole := 0, n >= len(want)*maxGSOSegments
		for i, w := range want {
			rest := w
			for k < out && len(rest) > 0 {
				d := pkts[k][:sizes[k]]
				if sizes[k] == 0 || !bytes.HasPrefix(rest, d) {
					break
				}
				if eps[k].(*conn.StdNetEndpoint).AddrPort != src {
					t.Fatalf("slot %d from %v", k, eps[k])
				}
				rest = rest[len(d):]
				k++
			}
			// With a slot for each of 64 datagrams a message, as the
			// device gives, none of a burst the kernel could make is lost.
			seg := []int32{seg1, seg2}[i]
			if whole && seg > 0 && (len(w)+int(seg)-1)/int(seg) <= maxGSOSegments && len(rest) > 0 {
				t.Fatalf("message %d: %d of %d bytes lost", i, len(rest), len(w))
			}
		}
		if k != out {
			t.Fatalf("slot %d of %d is not the next piece of its message", k, out)
		}
	})
}
