package vpn

import (
	"context"
	"log/slog"
	"net/netip"
	"testing"

	"github.com/nym-go/nym/internal/testexit"
	"github.com/nym-go/nym/ipr/router"
	"github.com/nym-go/nym/mixnet/client"
	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/tun"
)

// internetAddr is the test "internet" host: a gVisor stack standing behind
// the exit's TUN.
var internetAddr = netip.MustParseAddr("192.0.2.1")

// testExit is internal/testexit's exit under the names these tests use.
type testExit struct {
	mix    *client.Client
	router *router.Router
	net    *tun.Net
}

func startExit(t *testing.T, n *miniNet, lp client.Loopix) *testExit {
	t.Helper()
	e := testexit.Start(t, n.Net, nil, lp, internetAddr)
	return &testExit{mix: e.Client, router: e.Router, net: e.Internet}
}

// dialMixnet is a tunnel's Dial in these tests: it connects a client with
// lp through gateway gw and returns once the gateway has registered it. It
// runs on the tunnel's goroutines (a redial), so errors go back to the
// tunnel, never to t, and it takes as long as ctx allows; the tunnel closes
// the client.
func dialMixnet(ctx context.Context, n *miniNet, lp client.Loopix, gw directory.Key) (*client.Client, error) {
	return testexit.Dial(ctx, n.Net, client.Config{Loopix: &lp, Gateway: gw, Logger: quietLogger()})
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// directory0 is the gateway VPN clients use: the entry gateway.
func directory0(n *miniNet) directory.Key {
	for _, nd := range n.nodes {
		if r, _ := nd.Role(); r == directory.RoleEntry {
			return directory.Key(nd.Identity())
		}
	}
	return directory.Key{}
}
