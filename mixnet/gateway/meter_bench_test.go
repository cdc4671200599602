package gateway

import (
	"log/slog"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/nym-go/nym/internal/testticket"
	"github.com/nym-go/nym/mixnet/link"
)

// BenchmarkGatewayMetering is the gateway's path for a client's packet into
// the mixnet (frame in, parse, meter, rate limits, Forward) with tickets
// required and the client paid up, against the same path with tickets off.
// The two alternate, three rounds each, so load from elsewhere hits both,
// and make bench's table compares the fastest of each (target: metering
// costs under 2% of packets/s).
func BenchmarkGatewayMetering(b *testing.B) {
	m := testticket.New(b, 3, 2)
	for _, metered := range []bool{false, true, false, true, false, true} {
		name := map[bool]string{false: "off", true: "on"}[metered]
		b.Run(name, func(b *testing.B) {
			cfg := Config{
				Static: newKey(b), DataDir: b.TempDir(),
				Forward:    func([32]byte, []byte, bool) bool { return true },
				ClientRate: 1e12, ClientBurst: 1 << 30,
				Logger: slog.New(slog.DiscardHandler),
			}
			if metered {
				cfg.Tickets = ticketConfig(m, gatewayIdentity, 1<<62, time.Hour)
			}
			g, err := New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer g.Close()
			// A session as onConn makes one, on a connection that is never
			// dialled: the path under test only uses it as a key.
			c := new(link.Conn)
			cl := &client{limit: rate.NewLimiter(rate.Inf, 1)}
			cl.meter.left.Store(1 << 62)
			cl.meter.metered = metered
			s := &session{c: c, client: cl, wake: make(chan struct{}, 1), srcLimit: rate.NewLimiter(rate.Inf, 1)}
			g.sessions.Store(c, s)
			f := link.Frame{Kind: link.KindClient, Payload: sendFrame}
			b.ReportAllocs()
			start := time.Now()
			for b.Loop() {
				g.handleFrame(c, f)
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "pkts/s")
			if metered && cl.meter.left.Load() == 1<<62 {
				b.Fatal("nothing was metered")
			}
		})
	}
}
