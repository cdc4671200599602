package exit_test

import (
	"context"
	"encoding/binary"
	"log/slog"
	"net/netip"
	"testing"

	"github.com/nym-go/nym/ipr"
	"github.com/nym-go/nym/mixnet/client"
	"github.com/nym-go/nym/tun/ippkt"
)

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func send(t *testing.T, ctx context.Context, c *client.Client, to client.Address, r ipr.Request, surbs int) {
	t.Helper()
	msg, err := ipr.MarshalRequest(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SendWithReplySURBs(ctx, to, msg, surbs); err != nil {
		t.Fatalf("send %T: %v", r, err)
	}
}

// waitResponse returns the first response of type T, skipping others.
func waitResponse[T ipr.Response](t *testing.T, ctx context.Context, c *client.Client) T {
	t.Helper()
	for {
		select {
		case <-ctx.Done():
			var zero T
			t.Fatalf("no %T: %v", zero, ctx.Err())
		case m := <-c.Receive():
			r, err := ipr.ParseResponse(m.Data)
			if err != nil {
				t.Fatalf("response: %v", err)
			}
			if v, ok := r.(T); ok {
				return v
			}
			t.Logf("skipping %T %+v", r, r)
		}
	}
}

// udp4 builds an IPv4 UDP packet (UDP checksum 0: none, allowed on IPv4).
func udp4(src, dst netip.AddrPort, payload []byte) []byte {
	b := make([]byte, 28+len(payload))
	b[0], b[8], b[9] = 0x45, 64, ippkt.ProtoUDP
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	s, d := src.Addr().As4(), dst.Addr().As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	binary.BigEndian.PutUint16(b[10:], ^checksum(b[:20]))
	binary.BigEndian.PutUint16(b[20:], src.Port())
	binary.BigEndian.PutUint16(b[22:], dst.Port())
	binary.BigEndian.PutUint16(b[24:], uint16(8+len(payload)))
	copy(b[28:], payload)
	return b
}

func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// udp6 builds an IPv6 UDP packet (checksum left zero: the exit refuses it
// before anyone would check).
func udp6(src, dst netip.AddrPort, payload []byte) []byte {
	b := make([]byte, 48+len(payload))
	b[0], b[6], b[7] = 0x60, ippkt.ProtoUDP, 64
	binary.BigEndian.PutUint16(b[4:], uint16(8+len(payload)))
	s, d := src.Addr().As16(), dst.Addr().As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	binary.BigEndian.PutUint16(b[40:], src.Port())
	binary.BigEndian.PutUint16(b[42:], dst.Port())
	binary.BigEndian.PutUint16(b[44:], uint16(8+len(payload)))
	copy(b[48:], payload)
	return b
}
