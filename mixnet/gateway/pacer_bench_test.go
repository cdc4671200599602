package gateway

import (
	"testing"
	"time"

	"github.com/nym-go/nym/mixnet/gatewire"
)

// BenchmarkPacerSlot is a shaped session's clock at one slot per tick: an
// anonymous-plus slot (one extended reply, 8 KiB) with a delivery waiting
// ("carrying"), or with none ("cover"); the link's writer copies each frame
// out, as link.Conn's does before it lets the frame go.
func BenchmarkPacerSlot(b *testing.B) {
	const frameLen = 8 << 10
	msg := (&gatewire.Deliver{Seq: 1, Payload: make([]byte, frameLen-64)}).AppendBinary(nil)
	for _, carrying := range []bool{false, true} {
		name := map[bool]string{false: "cover", true: "carrying"}[carrying]
		b.Run(name, func(b *testing.B) {
			p := newPacer(time.Millisecond, frameLen, 64)
			wire := make([]byte, frameLen)
			write := func(f []byte, _, _ int) bool { copy(wire, f); p.done(f); return true }
			b.ReportAllocs()
			b.SetBytes(frameLen)
			for b.Loop() {
				if carrying && p.offer(msg) != offerQueued {
					b.Fatal("queue full")
				}
				if !p.slot(write) {
					b.Fatal("slot not sent")
				}
			}
		})
	}
}
