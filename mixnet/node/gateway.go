package node

import (
	"context"
	"fmt"
	"net"

	"github.com/nym-go/nym/anonymity"
	"github.com/nym-go/nym/mixnet/gateway"
)

// newGateway makes the gateway that serves clients when the node offers a
// gateway role. An auto node has one from the start, so taking the role at
// an epoch boundary needs nothing but the directory's word.
func (n *Node) newGateway() error {
	if n.cfg.Mode == ModeMixnode {
		return nil
	}
	g, err := gateway.New(gateway.Config{
		Static:  n.linkKey,
		DataDir: n.cfg.DataDir,
		Forward: n.forwardFromClient,

		// The operator's limits; zero ones take the gateway's defaults.
		MaxClients:       n.cfg.MaxClients,
		MaxStoredBytes:   n.cfg.MaxStoredBytesPerClient,
		MessageTTL:       n.cfg.MessageTTL.Duration,
		ClientRetention:  n.cfg.ClientRetention.Duration,
		MaxStoredClients: n.cfg.MaxStoredClients,

		MaxStoredBytesTotal: n.cfg.MaxStoredBytes,
		ClientRate:          n.cfg.ClientRate,
		ClientBurst:         n.cfg.ClientBurst,
		SourceRate:          n.cfg.SourceRate,
		SourceBurst:         n.cfg.SourceBurst,
		IdleTimeout:         n.cfg.ClientIdleTimeout.Duration,
		MaxClientsPerIP:     n.cfg.MaxClientsPerIP,
		MaxHandshakesPerIP:  n.cfg.MaxHandshakesPerIP,
		FirstMessageTimeout: n.cfg.FirstMessageTimeout.Duration,
		RecordClientsAfter:  n.cfg.RecordClientsAfter.Duration,

		MaxProvisionalClients: n.cfg.MaxProvisionalClients,
		MaxDownstreamBytes:    n.cfg.DownstreamMaxBytes,
		DownstreamQueue:       n.cfg.DownstreamQueue,

		Tickets: gateway.TicketConfig{
			Required: n.cfg.RequireTickets,
			Identity: n.Identity(),
			Issuers:  n.ticketIssuers,
			Quota:    n.cfg.TicketQuotaBytes,
			Grace:    n.cfg.TicketGrace.Duration,
			// The exit's IP router is a client of this gateway: the
			// node's own, it pays nothing. Nor do the authorities' loop
			// monitors the consensus names: they measure, they buy nothing.
			Exempt: func(id [32]byte) bool {
				if n.opts.RouterKey != nil && id == *n.opts.RouterKey {
					return true
				}
				t := n.topo.Load()
				return t != nil && t.IsMonitor(id)
			},
			Authorities:    n.network.Authorities,
			Threshold:      n.network.Threshold,
			IdentityKey:    n.keys.Identity,
			ReportInterval: n.cfg.TicketReportInterval.Duration,
		},

		Logger:     n.log,
		Registerer: n.registry,
		LinkStats:  n.links,

		Trace:     n.Trace(),
		TraceSelf: anonymity.IDOf(n.self[:]),
		TraceExit: func(id [32]byte) bool { return n.opts.RouterKey != nil && id == *n.opts.RouterKey },
	})
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	n.gateway = g
	return nil
}

// forwardFromClient puts a client's packet on the mixnet towards its first
// hop, unchanged.
func (n *Node) forwardFromClient(firstHop [32]byte, pkt []byte, odd bool) bool {
	if n.trace != nil {
		n.trace.out(0, firstHop, len(pkt))
	}
	return n.send(firstHop, pkt, odd)
}

func (n *Node) serveClients(ctx context.Context, ln net.Listener) error {
	return n.gateway.Serve(ctx, ln)
}

// Gateway is the node's gateway, nil for a mixnode-mode node. The exit's IP
// packet router registers itself on it as a local service.
func (n *Node) Gateway() *gateway.Gateway { return n.gateway }
