package exit_test

import (
	"testing"

	"github.com/nym-go/nym/internal/testnet"
)

// miniNet is the in-process mixnet of internal/testnet whose exit gateway
// announces the test's router key.
type miniNet struct {
	*testnet.Net
	Exit  *testnet.Node
	nodes []*testnet.Node
}

func startMiniNet(t *testing.T, routerKey [32]byte) *miniNet {
	t.Helper()
	n := testnet.Start(t, testnet.Options{RouterKey: &routerKey})
	return &miniNet{Net: n, Exit: n.Exit(), nodes: n.Nodes()}
}
