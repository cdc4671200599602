package vpn

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/nym-go/nym/internal/leakcheck"
	"github.com/nym-go/nym/internal/poll"
	"github.com/nym-go/nym/internal/testnet"
	"github.com/nym-go/nym/mixnet/client"
	"github.com/nym-go/nym/mixnet/directory"
)

// When the entry gateway dies the tunnel moves to another within about
// GatewayTimeout, not after DeadAfter of silence: the user's outage is
// seconds, not half a minute.
func TestGatewayLossMovesTunnelQuickly(t *testing.T) {
	leakcheck.Check(t)
	routerKey := [32]byte{}
	tn0 := testnet.Start(t, testnet.Options{Entries: 2, MaxEntries: 2, RouterKey: &routerKey})
	n := &miniNet{Net: tn0, Exit: tn0.Exit(), nodes: tn0.Nodes()}
	e := startExit(t, n, NoDelayProfile().Loopix)
	page := randomPage(16 << 10)
	serveInternet(t, e, page)

	var entries []*testnet.Node
	for _, nd := range n.nodes {
		if r, _ := nd.Role(); r == directory.RoleEntry {
			entries = append(entries, nd)
		}
	}
	if len(entries) != 2 {
		t.Fatalf("%d entry gateways, want 2", len(entries))
	}
	tunnel, hc := vpnSide(t, n, e, NoDelayProfile(), func(c *Config) {
		// Silence alone would take two minutes to notice.
		c.DeadAfter = 2 * time.Minute
		c.GatewayTimeout = 2 * time.Second
		c.Dial = func(ctx context.Context, attempt int) (Mixnet, client.Address, error) {
			gw := directory.Key(entries[min(attempt, 1)].Identity())
			m, err := dialMixnet(ctx, n, NoDelayProfile().Loopix, gw)
			if err != nil {
				return nil, client.Address{}, err
			}
			return m, e.mix.Address(), nil
		}
	})
	if !bytes.Equal(fetch(t, hc, tunnel, e, 30*time.Second), page) {
		t.Fatal("page differs before the gateway died")
	}

	killed := time.Now()
	n.StopNode(entries[0].Index)
	poll.Until(t, 60*time.Second, "the tunnel to move to the other gateway", func() bool {
		s := tunnel.Stats()
		return s.Reconnects == 1 && s.State == StateConnected
	})
	// Within a minute, while DeadAfter is two: the lost link, not
	// silence, gave the gateway up.
	t.Logf("moved to the other gateway %v after the first died", time.Since(killed).Round(time.Millisecond))
	if !bytes.Equal(fetch(t, hc, tunnel, e, 30*time.Second), page) {
		t.Fatal("page differs after the move")
	}
}
