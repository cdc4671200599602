package measure

import (
	"context"
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/rand"
	"fmt"
	"net/netip"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/curve25519"
	"golang.zx2c4.com/wireguard/tun/netstack"

	"github.com/nym-go/nym/anonymity"
	"github.com/nym-go/nym/anonymity/wgtrace"
	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/link"
	"github.com/nym-go/nym/tun"
	"github.com/nym-go/nym/wggate"
	"github.com/nym-go/nym/wgnest"
	"github.com/nym-go/nym/wgreg"
)

// FastMode is fast mode's name in the table.
const FastMode = "fast"

// Fast mode's run, in process and without root: an entry and an exit
// gateway (wggate, real WireGuard devices on loopback UDP, the entry's
// relay on real sockets), N clients each registered as nymvpn registers
// (wgreg: at the entry directly, at the exit relayed by the entry;
// tickets off) and each a nested tunnel (wgnest) over a userspace stack.
// The exit's TUN is a userspace stack too, the internet the workload
// servers listen on (wggate.Config.ExitDevice): the exit's kernel side
// (NAT, policy) is not what an observer sees, its packets are. Everything
// is on 127.0.0.1, told apart by port: the trace names a client by its
// endpoint, and the exit names the entry by its address (the only other
// gateway there).
var fastAddr = netip.MustParseAddr("127.0.0.1")

// fastRotation is the key rotation of the run's topology.
const fastRotation = 1

// wgCarries tells an entry's arrivals that can carry a datagram for the
// exit, as an observer who knows WireGuard tells them by size: a data
// message of at least 96 bytes (its 32 bytes of header and tag around an
// inner IPv4 and UDP header and the inner tunnel's smallest message, 60
// bytes padded to 64). The rest the entry consumes: handshake initiations
// (148), responses (92), cookie replies (64) and keepalives (32).
func wgCarries(e anonymity.Event) bool { return e.Size >= 96 && e.Size != 148 }

// gatewayKeys are one gateway's keys, as its node holds them.
type gatewayKeys struct {
	identity directory.Key
	link     link.KeyPair
	hpke     hpke.PrivateKey
	kemPub   []byte
}

func newGatewayKeys() (*gatewayKeys, error) {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	lk, err := link.GenerateKeyPair(rand.Reader)
	if err != nil {
		return nil, err
	}
	kem, err := link.GenerateKEMKey()
	if err != nil {
		return nil, err
	}
	lk.KEMKeys = link.NewKEMKeyring(kem)
	priv, err := wgreg.NewPrivateKey(kem.Seed(), lk.Private)
	if err != nil {
		return nil, err
	}
	return &gatewayKeys{identity: directory.Key(pub), link: lk, hpke: priv, kemPub: kem.PublicKey()}, nil
}

// node is the gateway's topology entry, WireGuard at wg.
func (k *gatewayKeys) node(wg netip.AddrPort, entry bool) directory.Node {
	return directory.Node{
		Identity:     k.identity,
		NoiseKey:     directory.Key(k.link.Public),
		KEMKeys:      []directory.RotationKEMKey{{Rotation: fastRotation, Key: k.kemPub}},
		WGAddr:       wg.String(),
		MixnetAddr:   netip.AddrPortFrom(wg.Addr(), 1789).String(),
		HTTPAddr:     netip.AddrPortFrom(wg.Addr(), 8080).String(),
		Capabilities: directory.Capabilities{Entry: entry, Exit: !entry},
	}
}

// config is the gateway's wggate configuration, recording into rec.
func (k *gatewayKeys) config(role wgreg.Role, listen netip.Addr, rec *anonymity.Recorder) wggate.Config {
	return wggate.Config{
		Role:     role,
		Identity: k.identity,
		Link:     k.link,
		HPKEKey: func(rot uint64) (hpke.PrivateKey, error) {
			if rot != fastRotation {
				return nil, fmt.Errorf("no key for rotation %d", rot)
			}
			return k.hpke, nil
		},
		Listen: netip.AddrPortFrom(listen, 0),
		// Every client comes from one address: the per-address bound,
		// a guard against one host taking the pool, would refuse some.
		MaxPeersPerIP: 1000,
		// No kernel connection tracking behind a userspace exit.
		FlushConntrack: func(...netip.Addr) (int, error) { return 0, nil },
		Logger:         quiet(),
		Trace:          rec,
	}
}

// fastNetwork brings up the gateways and the clients' nested tunnels,
// runs the workloads, and returns what it saw. The gateways record into
// entry.trace and exit.trace in dir, the clients into clients. Everything
// stops when t ends, which flushes the traces.
func fastNetwork(t *testing.T, o Options, dir string, clients *anonymity.Recorder) run {
	start := time.Now()
	record := func(name string) *anonymity.Recorder {
		rec, err := anonymity.OpenRecorder(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { // after the gateway's Close: cleanups run last first
			if err := rec.Close(); err != nil {
				t.Error(err)
			}
		})
		return rec
	}
	ek, err := newGatewayKeys()
	if err != nil {
		t.Fatal(err)
	}
	xk, err := newGatewayKeys()
	if err != nil {
		t.Fatal(err)
	}
	entryRec, exitRec := record("entry.trace"), record("exit.trace")
	entry, err := wggate.New(ek.config(wgreg.RoleEntry, fastAddr, entryRec))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { entry.Close() })
	idev, inet, err := netstack.CreateNetTUN([]netip.Addr{ServerAddr}, nil, wggate.DefaultExitMTU)
	if err != nil {
		t.Fatal(err)
	}
	xcfg := xk.config(wgreg.RoleExit, fastAddr, exitRec)
	xcfg.ExitDevice = idev
	exit, err := wggate.New(xcfg)
	if err != nil {
		idev.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { exit.Close() })
	entryNode := ek.node(netip.AddrPortFrom(fastAddr, entry.Port()), true)
	exitNode := xk.node(netip.AddrPortFrom(fastAddr, exit.Port()), false)
	top := &directory.Topology{Rotation: fastRotation, Entry: []directory.Node{entryNode}, Exit: []directory.Node{exitNode}}
	entry.Update(top)
	exit.Update(top)
	o.Log("%s: gateways up in %v", o.name(), since(start))

	// Tunnels come up in parallel, each named in the trace once its outer
	// socket is open.
	ids := make([]atomic.Uint32, o.Clients)
	stacks := make([]*tun.Net, o.Clients)
	// Registrations go a few at a time: the entry's registration server
	// takes at most link.DefaultMaxHandshakesPerIP (8) handshakes at once
	// from one address, and here every client's comes from 127.0.0.1 (the
	// exit admits more from its gateways: wireguard_max_relay_handshakes).
	regs := make(chan struct{}, 4)
	var wg sync.WaitGroup
	errs := make(chan error, o.Clients)
	for i := range o.Clients {
		wg.Go(func() {
			trace := &wgtrace.Config{
				Rec: clients,
				Self: func(port uint16) anonymity.NodeID {
					id := anonymity.EndpointID(netip.AddrPortFrom(fastAddr, port))
					ids[i].Store(uint32(id))
					return id
				},
				Role: anonymity.RoleClient,
				Peer: func(netip.AddrPort) (anonymity.NodeID, anonymity.Role) {
					return anonymity.IDOf(entryNode.Identity[:]), anonymity.RoleGateway
				},
			}
			stack, err := startNest(t, entryNode, exitNode, trace, regs)
			if err != nil {
				errs <- fmt.Errorf("client %d: %w", i, err)
			}
			stacks[i] = stack
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	o.Log("%s: %d tunnels up after %v", o.name(), o.Clients, since(start))
	r := run{flows: drive(o, start, inet.ListenTCPAddrPort, func(i int) dialer { return stacks[i].DialContext })}
	for i := range ids {
		r.clients = append(r.clients, anonymity.NodeID(ids[i].Load()))
	}
	return r
}

// startNest registers a client as nymvpn's fast mode does (two WireGuard
// keys, the entry's registration direct, the exit's relayed by the entry)
// and brings its nested tunnel up over a userspace stack, until the test
// ends; it registers holding a slot of regs. It runs on a goroutine of its own, so it returns errors rather
// than failing t.
func startNest(t *testing.T, entry, exit directory.Node, trace *wgtrace.Config, regs chan struct{}) (*tun.Net, error) {
	// Minutes, for a loaded machine: registration is a few round trips on
	// loopback and a handshake each way.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	innerPriv, innerPub, err := wgKeyPair()
	if err != nil {
		return nil, err
	}
	outerPriv, outerPub, err := wgKeyPair()
	if err != nil {
		return nil, err
	}
	regs <- struct{}{}
	regE, sess, err := wgreg.RegisterEntry(ctx, entry, outerPub, wgreg.Options{Rotation: fastRotation, Logger: quiet()})
	if err != nil {
		<-regs
		return nil, fmt.Errorf("registering at the entry: %w", err)
	}
	regX, err := sess.RegisterExit(ctx, exit, innerPub)
	sess.Close()
	<-regs
	if err != nil {
		return nil, fmt.Errorf("registering at the exit: %w", err)
	}
	dev, stack, err := tun.CreateNetstack([]netip.Addr{regX.AddrV4.Addr()}, nil, wgnest.DefaultInnerMTU)
	if err != nil {
		return nil, err
	}
	entryEP, _ := entry.WGAddrPort()
	exitEP, _ := exit.WGAddrPort()
	nest, err := wgnest.New(wgnest.Config{
		TUN:      dev,
		InnerKey: innerPriv, OuterKey: outerPriv,
		Entry:   wgnest.PeerOf(regE, entryEP),
		Exit:    wgnest.PeerOf(regX, exitEP),
		OuterV4: regE.AddrV4.Addr(), OuterV6: regE.AddrV6.Addr(),
		Logger: quiet(),
		Trace:  trace,
	})
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { nest.Close() })
	if err := nest.WaitHandshake(ctx); err != nil {
		return nil, err
	}
	return stack, nil
}

// wgKeyPair is a WireGuard (X25519) key pair.
func wgKeyPair() (priv, pub [32]byte, err error) {
	rand.Read(priv[:])
	p, err := curve25519.X25519(priv[:], curve25519.Basepoint)
	return priv, [32]byte(p), err
}
