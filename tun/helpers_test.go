package tun

import (
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nym-go/nym/tun/ippkt"
)

// pumpStats counts what one direction of a pump moved.
type pumpStats struct {
	reads, packets, bytes atomic.Int64
	maxPerRead            atomic.Int64
}

// pump copies packets from one device to the other until from is closed,
// checking that every packet is a well-formed IP packet no larger than
// from's MTU. It is the test's stand-in for the VPN's tunnel.
func pump(t testing.TB, from, to Device, stats *pumpStats) (wait func()) {
	t.Helper()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		bufs, sizes := NewBatch(from)
		pkts := make([][]byte, len(bufs))
		for {
			n, err := from.Read(bufs, sizes)
			if err != nil {
				if !errors.Is(err, os.ErrClosed) {
					t.Errorf("pump %s: read: %v", from.Name(), err)
				}
				return
			}
			for i := range n {
				pkts[i] = bufs[i][:sizes[i]]
				if sizes[i] > from.MTU() {
					t.Errorf("pump %s: packet of %d bytes exceeds MTU %d", from.Name(), sizes[i], from.MTU())
				}
				if _, err := ippkt.Parse(pkts[i]); err != nil {
					t.Errorf("pump %s: bad packet: %v", from.Name(), err)
				}
				stats.bytes.Add(int64(sizes[i]))
			}
			stats.reads.Add(1)
			stats.packets.Add(int64(n))
			for m := stats.maxPerRead.Load(); int64(n) > m && !stats.maxPerRead.CompareAndSwap(m, int64(n)); m = stats.maxPerRead.Load() {
			}
			if err := to.Write(pkts[:n]); err != nil {
				if errors.Is(err, os.ErrClosed) {
					return
				}
				t.Errorf("pump %s -> %s: write: %v", from.Name(), to.Name(), err)
			}
		}
	}()
	return wg.Wait
}

// connect pumps packets both ways between a and b until both are closed.
// Cleanup closes them and waits for the pumps.
func connect(t testing.TB, a, b Device) (ab, ba *pumpStats) {
	t.Helper()
	ab, ba = new(pumpStats), new(pumpStats)
	waitAB := pump(t, a, b, ab)
	waitBA := pump(t, b, a, ba)
	t.Cleanup(func() {
		a.Close()
		b.Close()
		waitAB()
		waitBA()
	})
	return ab, ba
}

// checksum is the Internet checksum (RFC 1071) of b, starting from sum.
func checksum(b []byte, sum uint32) uint16 {
	for len(b) >= 2 {
		sum += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// udpPacket builds an IPv4 or IPv6 UDP packet with valid checksums.
func udpPacket(src, dst netip.AddrPort, payload []byte) []byte {
	udpLen := 8 + len(payload)
	var b []byte
	var pseudo uint32
	if src.Addr().Is4() {
		b = make([]byte, 20+udpLen)
		b[0] = 0x45
		binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
		b[8], b[9] = 64, ippkt.ProtoUDP
		s, d := src.Addr().As4(), dst.Addr().As4()
		copy(b[12:], s[:])
		copy(b[16:], d[:])
		binary.BigEndian.PutUint16(b[10:], checksum(b[:20], 0))
		pseudo = sum16(b[12:20])
	} else {
		b = make([]byte, 40+udpLen)
		b[0] = 0x60
		binary.BigEndian.PutUint16(b[4:], uint16(udpLen))
		b[6], b[7] = ippkt.ProtoUDP, 64
		s, d := src.Addr().As16(), dst.Addr().As16()
		copy(b[8:], s[:])
		copy(b[24:], d[:])
		pseudo = sum16(b[8:40])
	}
	u := b[len(b)-udpLen:]
	binary.BigEndian.PutUint16(u[0:], src.Port())
	binary.BigEndian.PutUint16(u[2:], dst.Port())
	binary.BigEndian.PutUint16(u[4:], uint16(udpLen))
	copy(u[8:], payload)
	pseudo += ippkt.ProtoUDP + uint32(udpLen)
	c := checksum(u, pseudo)
	if c == 0 {
		c = 0xffff // 0 means "no checksum" in UDP
	}
	binary.BigEndian.PutUint16(u[6:], c)
	return b
}

// sum16 adds b as big-endian 16-bit words, unfolded.
func sum16(b []byte) uint32 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	return s
}

// readUntil reads packets from d until match accepts one, which it
// returns; it gives up when ctx ends (the caller closes d to unblock it).
func readUntil(ctx context.Context, d Device, match func(ippkt.Packet, []byte) bool) ([]byte, error) {
	type result struct {
		pkt []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		bufs, sizes := NewBatch(d)
		for {
			n, err := d.Read(bufs, sizes)
			if err != nil {
				done <- result{nil, err}
				return
			}
			for i := range n {
				b := bufs[i][:sizes[i]]
				if p, err := ippkt.Parse(b); err == nil && match(p, b) {
					done <- result{append([]byte(nil), b...), nil}
					return
				}
			}
		}
	}()
	select {
	case r := <-done:
		return r.pkt, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
