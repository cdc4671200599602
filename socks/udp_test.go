package socks

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"
)

// udpEcho answers every datagram with its payload and records what it got.
type udpEcho struct {
	pc   net.PacketConn
	mu   sync.Mutex
	seen []string
}

func startUDPEcho(t *testing.T) *udpEcho {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &udpEcho{pc: pc}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			e.mu.Lock()
			e.seen = append(e.seen, string(buf[:n]))
			e.mu.Unlock()
			pc.WriteTo(buf[:n], from)
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })
	return e
}

func (e *udpEcho) got() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.seen)
}

func udpHeader(frag byte, name string, port uint16) []byte {
	b := append([]byte{0, 0, frag, atypDomain, byte(len(name))}, name...)
	return binary.BigEndian.AppendUint16(b, port)
}

func TestUDPAssociate(t *testing.T) {
	d := newTestDialer(t)
	s := &Server{Dialer: d}
	addr := startServer(t, s)
	echo := startUDPEcho(t)
	echoPort := portOf(t, echo.pc.LocalAddr())

	ctl, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	ctl.SetDeadline(time.Now().Add(5 * time.Second))
	ctl.Write([]byte{5, 1, 0, 5, cmdUDPAssociate, 0, atypIPv4, 0, 0, 0, 0, 0, 0})
	rep := make([]byte, 2+10)
	if _, err := io.ReadFull(ctl, rep); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rep[:5], []byte{5, 0, 5, 0, 0}) || rep[5] != atypIPv4 {
		t.Fatalf("UDP ASSOCIATE reply %x", rep)
	}
	relay := net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.AddrFrom4([4]byte(rep[6:10])), binary.BigEndian.Uint16(rep[10:12])))

	client, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	exchange := func(payload string) {
		t.Helper()
		client.WriteTo(append(udpHeader(0, testName, echoPort), payload...), relay)
		client.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 2048)
		n, _, err := client.ReadFrom(buf)
		if err != nil {
			t.Fatalf("no answer to %q: %v", payload, err)
		}
		want := binary.BigEndian.AppendUint16([]byte{0, 0, 0, atypIPv4, 127, 0, 0, 1}, echoPort)
		want = append(want, payload...)
		if !bytes.Equal(buf[:n], want) {
			t.Errorf("answer %x, want %x", buf[:n], want)
		}
	}
	exchange("query1")

	// Another source, even on the same host, must not use the relay.
	stranger, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	stranger.WriteTo(append(udpHeader(0, testName, echoPort), "stranger"...), relay)
	// Fragments are dropped, not relayed.
	client.WriteTo(append(udpHeader(1, testName, echoPort), "fragment"...), relay)
	// Answered only after the relay has handled the two above (one reader).
	exchange("query2")

	if got := echo.got(); !slices.Equal(got, []string{"query1", "query2"}) {
		t.Errorf("echo server received %q, want only query1 and query2", got)
	}
	stranger.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, _, err := stranger.ReadFrom(make([]byte, 100)); err == nil {
		t.Errorf("stranger got an answer")
	}
	// The relay counts an answer's bytes after sending it on.
	waitFor(t, "2 dropped, 1 association, 12 bytes each way", func() bool {
		st := s.Stats()
		return st.UDPDropped == 2 && st.UDPAssociations == 1 && st.BytesUp == 12 && st.BytesDown == 12
	})
	if q := d.queries(); !slices.Equal(q, []string{testName}) {
		t.Errorf("resolver queries %v, want one for %s (cached after)", q, testName)
	}

	// Closing the control connection ends the association.
	ctl.Close()
	waitFor(t, "association to end", func() bool { return s.Stats().Active == 0 })
	client.WriteTo(append(udpHeader(0, testName, echoPort), "late"...), relay)
	time.Sleep(100 * time.Millisecond)
	if got := echo.got(); len(got) != 2 {
		t.Errorf("relay still forwarding after the control connection closed: %q", got)
	}
}

func TestReadUDPHeader(t *testing.T) {
	dst, payload, err := readUDPHeader([]byte{0, 0, 0, atypIPv4, 10, 0, 0, 1, 0, 53, 'q'})
	if err != nil || dst.IP != netip.MustParseAddr("10.0.0.1") || dst.Port != 53 || string(payload) != "q" {
		t.Errorf("got %v %q %v", dst, payload, err)
	}
	for _, b := range [][]byte{nil, {0, 0, 1, 1, 10, 0, 0, 1, 0, 53}, {0, 0, 0, 7, 1}, {0, 0, 0, atypIPv6, 1, 2}} {
		if _, _, err := readUDPHeader(b); err == nil {
			t.Errorf("readUDPHeader(%x) accepted", b)
		}
	}
}
