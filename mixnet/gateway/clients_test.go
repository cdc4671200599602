package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nym-go/nym/internal/leakcheck"
	"github.com/nym-go/nym/mixnet/gatewire"
	"github.com/nym-go/nym/mixnet/link"
	"github.com/nym-go/nym/mixnet/sphinx"
)

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func TestClientPacketsForwardedUnchanged(t *testing.T) {
	leakcheck.Check(t)
	tg := startGateway(t, t.TempDir(), link.KeyPair{}, nil)
	c := tg.dial(link.KeyPair{}, false)

	sends := []gatewire.Send{
		{Parity: 1, FirstHop: [32]byte{1, 2, 3}, Packet: randomBytes(sphinx.RegularPacketSize)},
		{Parity: 0, FirstHop: [32]byte{4, 5, 6}, Packet: randomBytes(sphinx.AckPacketSize)},
	}
	var wireBytes uint64
	for _, s := range sends {
		frame := s.AppendBinary(nil)
		wireBytes += uint64(len(frame))
		c.sendRaw(link.KindClient, frame)
	}
	got := tg.fwd.waitN(t, 2)
	for i, s := range sends {
		if got[i].hop != s.FirstHop || got[i].odd != (s.Parity == 1) || !bytes.Equal(got[i].pkt, s.Packet) {
			t.Errorf("forward %d: got hop %x odd %v (%d bytes), want hop %x odd %v (%d bytes, same content)",
				i, got[i].hop[:3], got[i].odd, len(got[i].pkt), s.FirstHop[:3], s.Parity == 1, len(s.Packet))
		}
	}
	// The gateway counts a forward after Forward returns, so the fake
	// forwarder can hold both packets before the counts move.
	tg.waitMetric("nym_gateway_packets_forwarded_total", 2)
	waitFor(t, "2 forwards counted for the client", func() bool {
		st, _ := tg.Client(c.addr())
		return st.Forwarded >= 2
	})
	st, _ := tg.Client(c.addr())
	if st.BytesIn != wireBytes || st.Forwarded != 2 {
		t.Errorf("client counters: %d bytes in, %d forwarded; want %d, 2", st.BytesIn, st.Forwarded, wireBytes)
	}
	if v := tg.metric("nym_gateway_packets_forwarded_total"); v != 2 {
		t.Errorf("packets_forwarded_total = %v, want 2", v)
	}
	if v := tg.metric("nym_gateway_client_bytes_in_total"); v != float64(wireBytes) {
		t.Errorf("client_bytes_in_total = %v, want %d", v, wireBytes)
	}

	// A packet the node cannot queue is counted, and the client stays.
	tg.fwd.mu.Lock()
	tg.fwd.refuse = true
	tg.fwd.mu.Unlock()
	c.sendRaw(link.KindClient, sends[0].AppendBinary(nil))
	tg.waitMetric("nym_gateway_packets_dropped_total", 1, "reason", "forward_refused")
}

func TestMalformedMessagesAnsweredThenDisconnected(t *testing.T) {
	leakcheck.Check(t)
	tg := startGateway(t, t.TempDir(), link.KeyPair{}, func(c *Config) { c.MaxBadMessages = 3 })
	good := tg.dial(link.KeyPair{}, false)
	bad := tg.dial(link.KeyPair{}, false)

	garbage := [][]byte{
		{0xff}, // unknown type
		(&gatewire.Send{Packet: []byte("short")}).AppendBinary(nil), // not a Sphinx packet size
		(&gatewire.Deliver{Seq: 1}).AppendBinary(nil),               // a gateway-to-client message
	}
	for i, g := range garbage {
		bad.sendRaw(link.KindClient, g)
		if st := bad.nextStatus(); st.Code != gatewire.StatusBadMessage {
			t.Fatalf("garbage %d: status %d %q, want BadMessage", i, st.Code, st.Text)
		}
	}

	// The gateway keeps serving others meanwhile, and ignores frames of
	// the wrong kind.
	good.sendRaw(link.KindPacket, randomBytes(100))
	tg.waitMetric("nym_gateway_client_ignored_frames_total", 1)
	good.sendRaw(link.KindClient, (&gatewire.Send{FirstHop: [32]byte{9}, Packet: randomBytes(sphinx.AckPacketSize)}).AppendBinary(nil))
	tg.fwd.waitN(t, 1)
	tg.deliver(good.addr(), id(1), []byte("still served"))
	if d := good.nextDeliver(); string(d.Payload) != "still served" {
		t.Fatalf("good client got %q", d.Payload)
	}

	// One more is one too many.
	bad.sendRaw(link.KindClient, []byte{0xfe})
	if st := bad.nextStatus(); st.Code != gatewire.StatusBadMessage || !strings.Contains(st.Text, "disconnecting") {
		t.Fatalf("last status %d %q, want BadMessage saying it disconnects", st.Code, st.Text)
	}
	bad.waitClosed()
	if v := tg.metric("nym_gateway_client_bad_messages_total"); v != 4 {
		t.Errorf("client_bad_messages_total = %v, want 4", v)
	}
	if v := tg.metric("nym_gateway_clients_disconnected_bad_total"); v != 1 {
		t.Errorf("clients_disconnected_bad_total = %v, want 1", v)
	}
	if st, _ := tg.Client(good.addr()); !st.Connected {
		t.Error("good client lost its connection")
	}
}

func TestFailedHandshakesRefusedOthersServed(t *testing.T) {
	leakcheck.Check(t)
	tg := startGateway(t, t.TempDir(), link.KeyPair{}, nil)
	good := tg.dial(link.KeyPair{}, false)

	// A client that expects another gateway's key cannot complete the
	// handshake.
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if c, err := link.Dial(ctx, tg.addr, newKey(t).Public, link.Config{Static: newKey(t), Logger: testLogger(t)}); err == nil {
		c.Close()
		t.Fatal("dial with the wrong gateway key succeeded")
	}

	// Garbage instead of a handshake is cut off.
	nc, err := net.Dial("tcp", tg.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// A well-framed first handshake message of random bytes: the gateway
	// reads all of it, fails to decrypt it and hangs up.
	nc.Write(append([]byte{0, 48}, randomBytes(48)...))
	nc.SetReadDeadline(time.Now().Add(waitTimeout))
	if _, err := io.ReadAll(nc); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("garbage connection not closed by the gateway: %v", err)
		}
	}

	waitFor(t, "two failed handshakes counted", func() bool { return tg.links.HandshakeFails.Load() >= 2 })
	tg.deliver(good.addr(), id(1), []byte("hello"))
	if d := good.nextDeliver(); string(d.Payload) != "hello" {
		t.Fatalf("good client got %q", d.Payload)
	}
	if n := len(tg.Clients()); n != 1 {
		t.Errorf("gateway knows %d clients, want 1", n)
	}
}

func TestGatewayFullRefusesClearly(t *testing.T) {
	leakcheck.Check(t)
	tg := startGateway(t, t.TempDir(), link.KeyPair{}, func(c *Config) { c.MaxClients = 1 })
	first := tg.dial(link.KeyPair{}, false)

	late := tg.dialNoWait(link.KeyPair{}, false)
	if st := late.nextStatus(); st.Code != gatewire.StatusRefused || st.Text != "gateway full" {
		t.Fatalf("status %d %q, want Refused \"gateway full\"", st.Code, st.Text)
	}
	late.waitClosed()
	if v := tg.metric("nym_gateway_clients_refused_total"); v != 1 {
		t.Errorf("clients_refused_total = %v, want 1", v)
	}

	// The first client is unaffected; once it leaves there is room.
	tg.deliver(first.addr(), id(1), []byte("x"))
	first.nextDeliver()
	first.disconnect(tg)
	again := tg.dial(late.key, false)
	tg.deliver(again.addr(), id(2), []byte("now you fit"))
	if d := again.nextDeliver(); string(d.Payload) != "now you fit" {
		t.Fatalf("got %q", d.Payload)
	}
}

func TestSecondConnectionReplacesFirst(t *testing.T) {
	leakcheck.Check(t)
	tg := startGateway(t, t.TempDir(), link.KeyPair{}, func(c *Config) { c.MaxClients = 1 })
	key := newKey(t)
	old := tg.dial(key, false)
	current := tg.dialNoWait(key, false) // same identity: not "one more client"

	if st := old.nextStatus(); st.Code != gatewire.StatusRefused || !strings.Contains(st.Text, "replaced") {
		t.Fatalf("old connection got %d %q, want a Refused saying it was replaced", st.Code, st.Text)
	}
	old.waitClosed()
	tg.deliver(key.Public, id(1), []byte("to the new one"))
	if d := current.nextDeliver(); string(d.Payload) != "to the new one" {
		t.Fatalf("got %q", d.Payload)
	}
	if v := tg.metric("nym_gateway_clients_connected"); v != 1 {
		t.Errorf("clients_connected = %v, want 1", v)
	}
}
