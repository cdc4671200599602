package node_test

import (
	"testing"
	"time"

	"github.com/nym-go/nym/internal/poll"
	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/gateway"
)

// The authorities' loop monitors pay no tickets: each authority's vote
// names its monitor's link key, the consensus carries all of them, and a
// gateway requiring tickets forwards the monitor's loops without asking it
// for one (it used to refuse them for want of a ticket, so the monitor
// measured nothing where tickets are required).
func TestMonitorLoopsExemptFromTickets(t *testing.T) {
	n := ticketNet(t)
	var top *directory.Topology
	poll.Until(t, 2*time.Minute, "a consensus naming every authority's monitor key", func() bool {
		var err error
		top, err = n.Topology()
		return err == nil && len(top.Monitors) == len(n.Network.Authorities)
	})
	for i, m := range top.Monitors {
		if _, ok := n.Network.Authority(m.Authority); !ok {
			t.Fatalf("monitor key %d of %s, no authority of the network", i, m.Authority)
		}
	}
	// Every gateway requires tickets here; loops go through each.
	var gws []*gateway.Gateway
	for _, nd := range n.Nodes() {
		if nd.Running() && nd.Gateway() != nil {
			gws = append(gws, nd.Gateway())
		}
	}
	poll.Until(t, 3*time.Minute, "a monitor's loops forwarded by a gateway requiring tickets", func() bool {
		for _, gw := range gws {
			for _, m := range top.Monitors {
				if st, ok := gw.Client([32]byte(m.Link)); ok && st.Forwarded > 0 {
					return true
				}
			}
		}
		return false
	})
	for _, gw := range gws {
		for _, m := range top.Monitors {
			if st, ok := gw.Client([32]byte(m.Link)); ok && st.Unpaid > 0 {
				t.Fatalf("monitor %s: %d packets refused for want of a ticket", m.Authority, st.Unpaid)
			}
		}
	}
}
