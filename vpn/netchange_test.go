package vpn

import (
	"bytes"
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nym-go/nym/internal/leakcheck"
	"github.com/nym-go/nym/internal/poll"
	"github.com/nym-go/nym/mixnet/client"
)

// The uplink's modes, as the test's dialer sees them.
const (
	uplinkUp   = iota
	uplinkDown // dials fail at once, as with no route
	uplinkHung // dials hang until cancelled, as through a gateway gone
)

// NetworkChanged moves a connected tunnel to a new path at once, and a
// reconnecting one tries again at once instead of waiting out its backoff
// (ten minutes here, longer than every deadline of the test) or a dial
// hanging on the old uplink.
func TestNetworkChangedReconnectsNow(t *testing.T) {
	leakcheck.Check(t)
	n := startMiniNet(t, [32]byte{})
	e := startExit(t, n, NoDelayProfile().Loopix)
	page := randomPage(16 << 10)
	serveInternet(t, e, page)

	var mode atomic.Int32
	dialed := make(chan int, 16)
	tunnel, hc := vpnSide(t, n, e, NoDelayProfile(), func(c *Config) {
		c.RedialMin, c.RedialMax = 10*time.Minute, 10*time.Minute
		c.DeadAfter = 10 * time.Minute
		c.Dial = func(ctx context.Context, attempt int) (Mixnet, client.Address, error) {
			select {
			case dialed <- int(mode.Load()):
			default:
			}
			switch mode.Load() {
			case uplinkDown:
				return nil, client.Address{}, errors.New("connect: network is unreachable")
			case uplinkHung:
				<-ctx.Done()
				return nil, client.Address{}, ctx.Err()
			}
			m, err := dialMixnet(ctx, n, NoDelayProfile().Loopix, directory0(n))
			if err != nil {
				return nil, client.Address{}, err
			}
			return m, e.mix.Address(), nil
		}
	})
	<-dialed // Connect's
	if !bytes.Equal(fetch(t, hc, tunnel, e, 30*time.Second), page) {
		t.Fatal("page differs before the change")
	}
	reconnected := func(want uint64) func() bool {
		return func() bool {
			s := tunnel.Stats()
			return s.Reconnects == want && s.State == StateConnected
		}
	}

	// Connected: a change moves the tunnel to a new path.
	tunnel.NetworkChanged()
	poll.Until(t, time.Minute, "the tunnel to move after a change", reconnected(1))
	<-dialed

	// The uplink goes: a change of it (the old connection is dead) makes
	// the tunnel redial, which fails; the backoff is ten minutes.
	mode.Store(uplinkDown)
	tunnel.NetworkChanged()
	if m := <-dialed; m != uplinkDown {
		t.Fatalf("dialed in mode %d", m)
	}
	// It comes back, first hanging: the change cuts the backoff short,
	// then the hung dial.
	mode.Store(uplinkHung)
	tunnel.NetworkChanged()
	if m := <-dialed; m != uplinkHung {
		t.Fatalf("dialed in mode %d", m)
	}
	mode.Store(uplinkUp)
	tunnel.NetworkChanged()
	poll.Until(t, time.Minute, "the tunnel to reconnect once the route is back", reconnected(2))
	if !bytes.Equal(fetch(t, hc, tunnel, e, 30*time.Second), page) {
		t.Fatal("page differs after the reconnect")
	}
}
