package node_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/nym-go/nym/internal/poll"
	"github.com/nym-go/nym/internal/testnet"
	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/node"
)

// registeredWith is how many nodes authority a holds descriptors of, as its
// health endpoint reports; -1 when it does not answer.
func registeredWith(a directory.Authority) int {
	hc := &http.Client{Timeout: 2 * time.Second}
	resp, err := hc.Get(a.URL + directory.PathHealth)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var h directory.HealthResponse
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&h) != nil {
		return -1
	}
	return h.Nodes
}

// Nodes given a network file of 3 authorities (k = 2) register with all
// three, and take their roles from the consensus, which only a document
// with 2 valid signatures of the network's authorities makes.
func TestNodesRegisterWithEveryAuthority(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for epochs")
	}
	n := testnet.Start(t, testnet.Options{Authorities: 3, Threshold: 2})
	nodes := len(n.Nodes())
	for _, a := range n.Network.Authorities {
		poll.Until(t, 10*time.Second, "every node registered with "+a.Name, func() bool { return registeredWith(a) == nodes })
	}
	// Epochs, not seconds: an epoch whose vote a busy authority misses has
	// no consensus.
	topo := n.WaitRoutable(10 * n.EpochLength()) // fetched k-of-n verified; every node follows its role in it
	for _, nd := range n.Nodes() {
		if role, _ := topo.RoleOf(directory.Key(nd.Identity())); role == directory.RoleNone {
			t.Errorf("node %d has no role in the consensus", nd.Index)
		}
	}
}

// With one of the 3 authorities down, a new node registers with the other
// two (a majority), enters the consensus they sign and takes its role.
func TestNodeRegistersWhileAnAuthorityIsDown(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for epochs")
	}
	n := testnet.Start(t, testnet.Options{Authorities: 3, Threshold: 2})
	n.StopAuthority(2)
	added := n.AddNode(node.ModeMixnode)
	id := directory.Key(added.Identity())
	nodes := len(n.Nodes())
	for _, a := range n.Network.Authorities[:2] {
		poll.Until(t, 10*time.Second, "the new node registered with "+a.Name, func() bool { return registeredWith(a) == nodes })
	}
	poll.Until(t, 6*n.EpochLength()+10*time.Second, "the new node in the consensus", func() bool {
		topo, err := n.Topology()
		if err != nil {
			return false
		}
		role, _ := topo.RoleOf(id)
		return role != directory.RoleNone
	})
	topo := n.WaitRoutable(10 * n.EpochLength())
	if role, _ := topo.RoleOf(id); role != directory.RoleStandby {
		t.Fatalf("the new mixnode has role %v, want standby (layers hold one node)", role)
	}
	if got := registeredWith(n.Network.Authorities[2]); got != -1 {
		t.Fatalf("the stopped authority answers (%d nodes)", got)
	}
}
