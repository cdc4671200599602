package client

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nym-go/nym/internal/poll"
	"github.com/nym-go/nym/internal/testnet"
)

// Clients given the network file of 3 authorities (k = 2) connect and
// exchange messages, and a client still connects with one authority
// stopped: any authority that answers gives the consensus, which verifies
// with the two signatures left. The last verified consensus is cached.
func TestConnectThroughAuthorityNetwork(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for epochs")
	}
	n := testnet.Start(t, testnet.Options{Authorities: 3, Threshold: 2})
	viaNetwork := func(cache string) func(*Config) {
		return func(c *Config) {
			c.Network, c.DirectoryURL, c.DirectoryKey, c.ConsensusCache = n.Network, "", nil, cache
		}
	}
	cache := filepath.Join(t.TempDir(), "consensus.json")
	a := connect(t, n, viaNetwork(cache))
	b := connect(t, n, viaNetwork(""))
	exchange := func(from, to *Client) {
		t.Helper()
		msg := randomBytes(1000)
		if err := from.Send(context.Background(), to.Address(), msg); err != nil {
			t.Fatal(err)
		}
		if m := receive(t, to, 2*time.Minute); !bytes.Equal(m.Data, msg) {
			t.Fatalf("received %d bytes, not the %d sent", len(m.Data), len(msg))
		}
	}
	exchange(a, b)
	if st, err := os.Stat(cache); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("consensus cache: %v, %v", st, err)
	}

	before, err := n.Topology()
	if err != nil {
		t.Fatal(err)
	}
	n.StopAuthority(1)
	// A consensus the two left voted and signed alone.
	poll.Until(t, 4*n.EpochLength()+10*time.Second, "a consensus without authority 2", func() bool {
		topo, err := n.Topology()
		return err == nil && topo.Epoch > before.Epoch+1 && topo.Routable() == nil
	})
	c := connect(t, n, viaNetwork(""))
	exchange(c, b)
	exchange(b, c)
}
