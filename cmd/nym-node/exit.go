package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/nym-go/nym/ipr/exit"
	"github.com/nym-go/nym/ipr/router"
	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/node"
	"github.com/nym-go/nym/platform"
)

// exitFlags are the run flags of the exit's IP packet router.
type exitFlags struct {
	uplink     string
	policyFile string
	tunName    string
	noRouter   bool
	// limits that keep one client from the others; 0 is ipr's default
	maxAddrsPerSender int
	addrQuarantine    time.Duration
	maxSenderRequests int
}

func (e *exitFlags) bind(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&e.uplink, "exit-uplink", "", "interface toward the internet for the IP router's NAT (default: the interface of the default route)")
	f.StringVar(&e.policyFile, "exit-policy", "", "file with the exit policy (Tor ExitPolicy syntax) applied after the built-in rejections")
	f.StringVar(&e.tunName, "exit-tun", exit.DefaultTUNName, "name of the IP router's TUN interface")
	f.BoolVar(&e.noRouter, "no-ip-router", false, "run an exit gateway without the IP packet router")
	f.IntVar(&e.maxAddrsPerSender, "exit-max-addrs-per-sender", 0, "addresses one sender tag may hold, live or in quarantine (0: 4)")
	f.DurationVar(&e.addrQuarantine, "exit-addr-quarantine", 0, "how long a released client address waits before another client gets it (0: 2m)")
	f.IntVar(&e.maxSenderRequests, "exit-max-sender-requests", 0, "requests one sender tag may have waiting (0: 1024)")
}

// wantsRouter reports whether a node in mode runs the IP packet router:
// exit gateways do, and auto nodes, which may be assigned the exit role.
func wantsRouter(mode node.Mode) bool {
	return mode == node.ModeExitGateway || mode == node.ModeAuto
}

// exitRouter is the IP packet router prepared to run beside a node.
type exitRouter struct {
	cfg exit.Config
	key [32]byte
	log *slog.Logger
}

// prepareRouter loads what the router needs before the node starts, so that
// the node can announce the router's key. It returns nil when the router is
// not to run: not an exit, --no-ip-router, or no CAP_NET_ADMIN (a warning,
// since the node itself still works).
func (e *exitFlags) prepareRouter(cfg node.Config, log *slog.Logger) (*exitRouter, error) {
	if !wantsRouter(cfg.Mode) || e.noRouter {
		return nil, nil
	}
	rlog := log.With("component", "ip-router")
	if !exit.HasNetAdmin() {
		rlog.Warn("the IP packet router needs CAP_NET_ADMIN (run as root); running the exit without it: clients' VPN traffic will not be served")
		return nil, nil
	}
	id, err := exit.LoadOrCreateIdentity(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	// The router's client follows the node's directory: its network file,
	// or the one directory URL and key.
	var network *directory.Network
	var dirKey ed25519.PublicKey
	if cfg.NetworkFile != "" {
		if network, err = cfg.Network(); err != nil {
			return nil, err
		}
	} else {
		key, err := directory.ParseKey(cfg.DirectoryKey)
		if err != nil {
			return nil, fmt.Errorf("directory key: %w", err)
		}
		dirKey = key.Ed25519()
	}
	var policy *platform.ExitPolicy
	if e.policyFile != "" {
		text, err := os.ReadFile(e.policyFile)
		if err != nil {
			return nil, fmt.Errorf("--exit-policy: %w", err)
		}
		if policy, err = platform.ParseExitPolicy(string(text)); err != nil {
			return nil, fmt.Errorf("--exit-policy %s: %w", e.policyFile, err)
		}
	}
	uplink := e.uplink
	if uplink == "" {
		if uplink, err = exit.DefaultUplink(); err != nil {
			// The router then looks for the default route itself when it
			// starts, and retries until there is one: it forwards only
			// between its TUN and one uplink.
			rlog.Warn("no default route yet; the IP router waits for one (or set --exit-uplink)", "err", err)
		}
	}
	// The exit's WireGuard door (fast mode) is the router's second door:
	// its TUN and ranges come under the same exit networking.
	var wgTUNs []string
	var wgRanges []netip.Prefix
	if tun, ranges, ok := cfg.WireGuardExitDoor(); ok {
		wgTUNs, wgRanges = []string{tun}, ranges
	}
	return &exitRouter{
		key: id.Public,
		log: rlog,
		cfg: exit.Config{
			DataDir:      cfg.DataDir,
			Identity:     &id,
			Network:      network,
			DirectoryURL: cfg.DirectoryURL,
			DirectoryKey: dirKey,
			TUNName:      e.tunName,
			Uplink:       uplink,
			Policy:       policy,
			Logger:       log,

			ExtraTUNs:           wgTUNs,
			ExtraClientPrefixes: wgRanges,
			Router: router.Config{
				MaxAddrsPerSender: e.maxAddrsPerSender,
				AddrQuarantine:    e.addrQuarantine,
				MaxSenderRequests: e.maxSenderRequests,
			},
		},
	}, nil
}

// run serves the router beside node n until ctx ends. The router connects to
// the node's own gateway, which is not in the topology until the directory
// has assigned the node its role (and, in auto mode, may not be this
// epoch), so failures are retried with backoff.
func (r *exitRouter) run(ctx context.Context, n *node.Node) {
	r.cfg.Gateway = directory.Key(n.Identity())
	r.cfg.Trace = n.Trace() // trace_file: the internet side too
	var current atomic.Pointer[exit.Service]
	metrics := exit.NewCollector(func() (exit.Stats, bool) {
		if svc := current.Load(); svc != nil && svc.Router() != nil {
			return svc.Stats(), true
		}
		return exit.Stats{}, false
	})
	if err := n.Registerer().Register(metrics); err != nil {
		r.log.Warn("IP packet router metrics", "err", err)
	} else {
		defer n.Registerer().Unregister(metrics)
	}
	wait := time.Second
	for {
		svc, err := exit.New(r.cfg)
		if err != nil {
			r.log.Error("IP packet router", "err", err)
			return
		}
		current.Store(svc)
		err = svc.Run(ctx)
		current.Store(nil)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, exit.ErrNotPrivileged) {
			r.log.Error("IP packet router", "err", err)
			return
		}
		r.log.Warn("IP packet router stopped; retrying", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Minute)
	}
}

// runWithRouter runs node n and the IP packet router beside it until ctx
// ends or the node stops. The router stops first, so that its goodbyes to
// the VPN clients still find the node's gateway up.
func runWithRouter(ctx context.Context, n *node.Node, r *exitRouter) error {
	nodeCtx, stopNode := context.WithCancel(context.WithoutCancel(ctx))
	defer stopNode()
	routerCtx, stopRouter := context.WithCancel(ctx)
	defer stopRouter()
	nodeDone := make(chan error, 1)
	go func() { nodeDone <- n.Run(nodeCtx) }()
	var wg sync.WaitGroup
	wg.Go(func() { r.run(routerCtx, n) })

	var err error
	nodeRunning := true
	select {
	case <-ctx.Done():
	case err = <-nodeDone:
		nodeRunning = false
	}
	stopRouter()
	wg.Wait()
	if nodeRunning {
		stopNode()
		err = <-nodeDone
	}
	return err
}
