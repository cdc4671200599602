// Package measure runs the anonymity measurement of issue 18: an
// in-process network (internal/testnet: real nodes, real Sphinx and Noise
// on loopback sockets) with every node recording a trace, N VPN tunnels
// over userspace stacks (gVisor, no root) running web, bulk, interactive
// and idle workloads against servers on the exit's internet side, and the
// analyses of package anonymity on the traces: sender entropy,
// flow-correlation accuracy up and down, and cover indistinguishability.
//
// It needs a testing.T (the test network is built for tests); `make
// anonymity` runs TestAnonymityReport, which prints the table.
package measure

import (
	"context"
	crand "crypto/rand"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nym-go/nym/anonymity"
	"github.com/nym-go/nym/internal/netstacktest"
	"github.com/nym-go/nym/internal/poll"
	"github.com/nym-go/nym/internal/testexit"
	"github.com/nym-go/nym/internal/testnet"
	"github.com/nym-go/nym/ipr/exit"
	"github.com/nym-go/nym/mixnet/client"
	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/link"
	"github.com/nym-go/nym/mixnet/node"
	"github.com/nym-go/nym/tun"
	"github.com/nym-go/nym/vpn"
)

// Options configure one run.
type Options struct {
	// Profile is the tunnels' mixing profile.
	Profile vpn.Profile
	// Fast measures fast mode instead of the mixnet: two hops of nested
	// WireGuard through an entry and an exit gateway (see fast.go).
	// Profile is then unused.
	Fast bool
	// Clients is N, the number of tunnels; default 10.
	Clients int
	// Duration is how long the workloads run once every tunnel is up;
	// default 60 s. With MinFlows they run on until that many flows have
	// carried data, for at most MaxDuration (default 4 × Duration): a
	// loaded machine moves less per second, and the attacker is scored on
	// flows, not seconds.
	Duration, MaxDuration time.Duration
	MinFlows              int
	// Seed picks the workloads' start times and sizes; runs with one seed
	// ask for the same traffic (the network's own timing still varies).
	Seed uint64
	// Log, if set, receives progress lines.
	Log func(format string, args ...any)
}

// name is the mode's name in logs and the table.
func (o Options) name() string {
	if o.Fast {
		return FastMode
	}
	return o.Profile.Name
}

func (o Options) withDefaults() (Options, error) {
	if o.Clients < 0 || o.Duration < 0 || o.MaxDuration < 0 || o.MinFlows < 0 {
		return o, fmt.Errorf("measure: negative clients %d, flows %d or durations %v, %v", o.Clients, o.MinFlows, o.Duration, o.MaxDuration)
	}
	if o.Profile.Name == "" {
		o.Profile = vpn.DefaultProfile()
	}
	if o.Clients == 0 {
		o.Clients = 10
	}
	if o.Duration == 0 {
		o.Duration = 60 * time.Second
	}
	if o.MaxDuration == 0 {
		o.MaxDuration = 4 * o.Duration
	}
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
	return o, nil
}

// tunnelSide is one client: its tunnel and the stack behind it.
type tunnelSide struct {
	mix   *client.Client
	tn    *vpn.Tunnel
	stack *tun.Net
}

// startTunnel connects client i's tunnel through gateway gw to e's router
// and runs it over a userspace stack until the test ends.
// It runs on a goroutine of its own, so it returns errors rather than
// failing t.
func startTunnel(t *testing.T, n *testnet.Net, e *testexit.Exit, p vpn.Profile, gw directory.Key, ccfg client.Config) (*tunnelSide, error) {
	var mu sync.Mutex
	side := &tunnelSide{}
	lp := p.Loopix
	ccfg.Loopix, ccfg.Gateway = &lp, gw
	cfg := vpn.Config{
		Profile: p,
		Logger:  quiet(),
		// A loaded machine (load 50 was seen) answers a Connect in
		// minutes, and goes quiet for longer than the defaults allow. A
		// redial would make the client someone else, a new identity that
		// the run's ground truth does not know: better to wait.
		ConnectTimeout: 5 * time.Minute,
		DeadAfter:      5 * time.Minute,
		Dial: func(ctx context.Context, attempt int) (vpn.Mixnet, client.Address, error) {
			m, err := testexit.Dial(ctx, n, ccfg)
			if err != nil {
				return nil, client.Address{}, err
			}
			mu.Lock()
			side.mix = m
			mu.Unlock()
			return m, e.Client.Address(), nil
		},
	}
	// Connecting waits on the mixnet, minutes on a loaded machine: given
	// up only when nothing moves.
	ctx, cancel := poll.WithProgress(context.Background(), 60*time.Second, func() uint64 {
		mu.Lock()
		defer mu.Unlock()
		return progress(side.mix) + progress(e.Client)
	})
	defer cancel()
	tn, err := vpn.Connect(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("tunnel: %w (%v)", err, context.Cause(ctx))
	}
	stack, err := netstacktest.Start(t, tn.Addrs().V4, tn.MTU(), tn.Run)
	if err != nil {
		tn.Close()
		return nil, err
	}
	side.tn, side.stack = tn, stack
	return side, nil
}

// progress counts what a client did towards a tunnel's Connect (cover
// flows whether or not anything advances, so it is left out).
func progress(c *client.Client) uint64 {
	if c == nil {
		return 0
	}
	s := c.Stats()
	return s.RealPacketsSent + s.AcksReceived + s.SURBsCreated + s.SURBsReceived + s.MessagesReceived
}

// run is what one run saw, before analysis.
type run struct {
	clients []anonymity.NodeID // by index, as the traces name them
	flows   []flowStats        // by client
}

// network brings up the network, the exit and the tunnels, runs the
// workloads for o.Duration, and returns what it saw. Everything it starts
// stops when t ends, which flushes the traces.
func network(t *testing.T, o Options, edit func(*testnet.Options), clientCfg func(i int) client.Config) run {
	id, err := link.GenerateKeyPair(crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	routerKey := id.Public
	to := testnet.Options{RouterKey: &routerKey}
	if edit != nil {
		edit(&to)
	}
	// Every client comes from 127.0.0.1, all at once: the per-address
	// handshake limit, a guard against one host's flood, would refuse
	// some of them.
	nodeEdit := to.EditNode
	to.EditNode = func(c *node.Config) {
		c.MaxHandshakesPerIP = 1000
		if nodeEdit != nil {
			nodeEdit(c)
		}
	}
	start := time.Now()
	n := testnet.Start(t, to)
	e := testexit.StartOptions(t, n, testexit.Options{Identity: &id, Loopix: exit.ServiceLoopix(), Internet: []netip.Addr{ServerAddr}})
	var entry directory.Key
	for _, nd := range n.Nodes() {
		if nd.Config.Mode == node.ModeEntryGateway {
			entry = directory.Key(nd.Identity())
		}
	}
	o.Log("%s: network up in %v", o.name(), time.Since(start).Round(time.Millisecond))

	// Tunnels connect in parallel: each waits on its mixnet round trips.
	sides := make([]*tunnelSide, o.Clients)
	var wg sync.WaitGroup
	errs := make(chan error, o.Clients)
	for i := range o.Clients {
		ccfg := client.Config{Logger: quiet()}
		if clientCfg != nil {
			ccfg = clientCfg(i)
		}
		wg.Go(func() {
			s, err := startTunnel(t, n, e, o.Profile, entry, ccfg)
			if err != nil {
				errs <- fmt.Errorf("client %d: %w", i, err)
			}
			sides[i] = s
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	o.Log("%s: %d tunnels up after %v", o.name(), o.Clients, time.Since(start).Round(time.Millisecond))

	r := run{flows: drive(o, start, e.Internet.ListenTCPAddrPort, func(i int) dialer { return sides[i].stack.DialContext })}
	for _, s := range sides {
		id := s.mix.Address().Identity
		r.clients = append(r.clients, anonymity.IDOf(id[:]))
	}
	return r
}

// drive runs every client's workload (client i dials through dial(i))
// against servers on listen, for o.Duration and on until o.MinFlows flows
// moved data (at most o.MaxDuration), and returns what each did.
func drive[L net.Listener](o Options, start time.Time, listen func(netip.AddrPort) (L, error), dial func(i int) dialer) []flowStats {
	in := &internet{listenTCP: func(ap netip.AddrPort) (net.Listener, error) { return listen(ap) }}
	defer in.Close()
	ctx, cancel := context.WithTimeout(context.Background(), max(o.Duration, o.MaxDuration))
	defer cancel()
	var moved atomic.Int64
	var wg sync.WaitGroup
	// The workloads stop at Duration once MinFlows flows have moved data;
	// the poll is of a condition, not a clock: a busy machine only takes
	// longer.
	wg.Go(func() {
		if !sleep(ctx, o.Duration) {
			return
		}
		for moved.Load() < int64(o.MinFlows) && sleep(ctx, 100*time.Millisecond) {
		}
		cancel()
	})
	rng := rand.New(rand.NewPCG(o.Seed, 18))
	flows := make([]flowStats, o.Clients)
	for i := range o.Clients {
		crng := rand.New(rand.NewPCG(rng.Uint64(), uint64(i)))
		d := dial(i)
		wg.Go(func() {
			flows[i] = runWorkload(ctx, crng, in, d, i, workloadOf(i), o.Duration/3, &moved)
		})
	}
	wg.Wait()
	o.Log("%s: workloads done after %v, %d flows moved data", o.name(), time.Since(start).Round(time.Millisecond), moved.Load())
	return flows
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }
