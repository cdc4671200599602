package node

import (
	"errors"
	"sync"

	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/ticket"
)

// issuerCache keeps the ticket issuers of the topology they were read from,
// so the gateway's check does not rebuild them for every ticket.
type issuerCache struct {
	mu      sync.Mutex
	topo    *directory.Topology
	issuers ticket.Issuers
	err     error
}

// ticketIssuers returns the authorities' ticket keys from the consensus the
// node follows: the gateway verifies spends against them.
func (n *Node) ticketIssuers() (ticket.Issuers, error) {
	t := n.topo.Load()
	if t == nil {
		return ticket.Issuers{}, errors.New("no consensus yet")
	}
	c := &n.issuers
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.topo != t {
		c.topo = t
		c.issuers, c.err = ticket.IssuersFrom(n.network, t)
	}
	return c.issuers, c.err
}
