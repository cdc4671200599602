package client

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/nym-go/nym/mixnet/gatewire"
	"github.com/nym-go/nym/mixnet/sphinx"
)

// BenchmarkUpstream follows one data packet of a tunnel from the caller's
// hands to the frame the client gives its gateway link (link.Conn.Send), the
// way the VPN sends: a full packet with our sender tag and no SURBs.
//
//   - stream: Pull writes the data into the packet's buffer (standing for
//     the TUN read), then the stream's build.
//   - reply_stream: the same for a reply stream (the exit's way down);
//     its Sphinx part is two Lioness rounds' keys.
//   - pushed: the data is copied into the caller's buffer (the TUN read),
//     then SendRepliablePacket and the builder that takes its job.
//   - sphinx: Sphinx creation alone, as a forward packet needs it (the
//     SURB-ack packet and the packet itself, built in place, routes given).
//
// allocs/op counts every allocation; big_allocs/op those of 1 KiB or more,
// the payload-sized ones. payload_copies/op counts, by construction, the
// times the data is moved outside Sphinx, the link's one copy into its batch
// buffer (link/writer.go) included; the stream case checks the claim it
// rests on, that the frame is the very buffer Pull wrote into and the data
// never moved before sealing. Lioness moves the payload twice per layer
// inside Sphinx (its stream rounds), counted in neither.
func BenchmarkUpstream(b *testing.B) {
	data := randomBytes(repliableDataCapacity(0))
	b.Run("stream", func(b *testing.B) {
		c := offlineClient(b)
		s := &Stream{c: c, to: c.addr, tag: c.replyKeys.tagFor(c.addr)}
		src := &constSource{data: data}
		var p Payload
		op := func() {
			p.reset(newWireBuffer(), false, sphinx.SizeRegular)
			if !src.Pull(&p) {
				b.Fatal("empty Pull")
			}
			bp, err := s.build(&p, nil)
			if err != nil {
				b.Fatal(err)
			}
			if &bp.wire[0] != &p.buf[0] || len(bp.wire) != wireLen {
				b.Fatal("the frame is not the buffer Pull wrote into")
			}
			sinkWire = bp.wire
			// What the link's writer does once it has copied the
			// frame into its batch (link.Frame.Done).
			releaseWire(bp.wire)
		}
		op() // pools and lazily made state, so that -benchtime 3x measures a packet
		b.ReportAllocs()
		big := bigAllocs()
		for b.Loop() {
			op()
		}
		b.ReportMetric(float64(bigAllocs()-big)/float64(b.N), "big_allocs/op")
		// The TUN read into Buf, the link's batch append.
		b.ReportMetric(2, "payload_copies/op")
	})
	b.Run("reply_stream", func(b *testing.B) {
		// The exit's way down: a reply stream's packet through a SURB
		// (one SURB serves every iteration; the bytes are the same).
		c := offlineClient(b)
		surb, _, err := c.newSURB([sphinx.IDSize]byte{1})
		if err != nil {
			b.Fatal(err)
		}
		s := &Stream{c: c, reply: true}
		src := &constSource{data: randomBytes(replyDataCapacity)}
		var p Payload
		op := func() {
			p.reset(newWireBuffer(), true, sphinx.SizeRegular)
			if !src.Pull(&p) {
				b.Fatal("empty Pull")
			}
			bp, err := s.build(&p, &surb)
			if err != nil {
				b.Fatal(err)
			}
			if &bp.wire[0] != &p.buf[0] {
				b.Fatal("the frame is not the buffer Pull wrote into")
			}
			sinkWire = bp.wire
			// What the link's writer does once it has copied the
			// frame into its batch (link.Frame.Done).
			releaseWire(bp.wire)
		}
		op()
		b.ReportAllocs()
		big := bigAllocs()
		for b.Loop() {
			op()
		}
		b.ReportMetric(float64(bigAllocs()-big)/float64(b.N), "big_allocs/op")
		b.ReportMetric(2, "payload_copies/op")
	})
	b.Run("pushed", func(b *testing.B) {
		c := offlineClient(b)
		to := c.addr
		buf := make([]byte, len(data)) // the caller's reused read buffer
		ctx := context.Background()
		op := func() {
			copy(buf, data)
			if err := c.SendRepliablePacket(ctx, to, buf, 0); err != nil {
				b.Fatal(err)
			}
			j := <-c.jobs
			bp, err := c.build(j)
			if err != nil {
				b.Fatal(err)
			}
			c.stats.queued.Add(-1)
			c.finish(j)
			sinkWire = bp.wire
			// What the link's writer does once it has copied the
			// frame into its batch (link.Frame.Done).
			releaseWire(bp.wire)
		}
		op()
		b.ReportAllocs()
		big := bigAllocs()
		for b.Loop() {
			op()
		}
		b.ReportMetric(float64(bigAllocs()-big)/float64(b.N), "big_allocs/op")
		// The read; message encoding; the padded fragment; the copy of
		// the plaintext into the packet buffer; the link's batch append.
		b.ReportMetric(5, "payload_copies/op")
	})
	b.Run("sphinx", func(b *testing.B) {
		c := offlineClient(b)
		fwd, err := c.routes.newRoute(c.addr.Gateway)
		if err != nil {
			b.Fatal(err)
		}
		back, _ := c.routes.newRoute(c.addr.Gateway)
		w := newWireBuffer()
		dest := sphinx.Destination{Address: c.addr.Identity}
		op := func() {
			ack := w[fwdSealedOff-sphinx.AckPacketSize : fwdSealedOff]
			if err := sphinx.NewPacketInPlace(ack, 0, back.hops[:], dest, sphinx.SizeAck); err != nil {
				b.Fatal(err)
			}
			if err := sphinx.NewPacketInPlace(w[gatewire.SendHeaderLen:], sphinx.RegularPayload, fwd.hops[:], dest, sphinx.SizeRegular); err != nil {
				b.Fatal(err)
			}
		}
		op()
		b.ReportAllocs()
		big := bigAllocs()
		for b.Loop() {
			op()
		}
		b.ReportMetric(float64(bigAllocs()-big)/float64(b.N), "big_allocs/op")
	})
}

var sinkWire []byte

// constSource hands out the same data every time, copied into the buffer.
type constSource struct{ data []byte }

func (s *constSource) Pull(p *Payload) bool {
	return p.SetData(append(p.Buf(), s.data...)) == nil
}

// bigAllocs is how many heap allocations of 1 KiB to 32 KiB (the
// runtime's small size classes; a packet is 2.4 KiB) the process made.
// ReadMemStats stops the world and counts what the Ps have cached, so the
// figure is exact even over 3 iterations.
func bigAllocs() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	var n uint64
	for _, c := range ms.BySize {
		if c.Size >= 1024 {
			n += c.Mallocs
		}
	}
	return n
}

// BenchmarkStreamSlots is the share of a Poisson stream's slots that carry
// a stream's data while its source always has some (a tunnel's upload), at
// anonymous-plus's 200 slots/s: data_share/op, 1 at best. A slot whose
// stream has no packet built carries loop cover, so this is what the
// stream's build-ahead (streamAhead) buys on a busy host. Each op is 200
// slots, about a second; run with -benchtime 5x.
func BenchmarkStreamSlots(b *testing.B) {
	f := newFakeNet(b, 1, 1)
	rec := &shapeRecorder{sizes: map[int]int{}}
	lp := Loopix{SendInterval: 5 * time.Millisecond}
	a := f.connect(b, func(c *Config) {
		c.Loopix = &lp
		c.hooks = &testHooks{onSend: rec.onSend}
	})
	peer := f.connect(b, nil)
	s, err := a.OpenStream(peer.Address(), &constSource{data: randomBytes(repliableDataCapacity(0))})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	s.Wake()
	slots := func() int {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return rec.real + rec.cover
	}
	rec.take()
	var real, cover int
	for b.Loop() {
		for start := slots(); slots()-start < 200; {
			time.Sleep(5 * time.Millisecond)
		}
		r, c, _ := rec.take()
		real, cover = real+r, cover+c
	}
	b.ReportMetric(float64(real)/float64(real+cover), "data_share/op")
}
