package node_test

import (
	"context"
	"crypto/rand"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nym-go/nym/internal/poll"
	"github.com/nym-go/nym/internal/testnet"
	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/gatewire"
	"github.com/nym-go/nym/mixnet/link"
	"github.com/nym-go/nym/mixnet/node"
	"github.com/nym-go/nym/mixnet/nodekey"
	"github.com/nym-go/nym/mixnet/sphinx"
)

// linkEvent reads one of a node's link counters from its metrics.
func linkEvent(t *testing.T, nd *testnet.Node, event string) int {
	t.Helper()
	m := regexp.MustCompile(`event="` + event + `"} (\d+)`).FindStringSubmatch(metric(t, nd, "nym_link_events_total"))
	if m == nil {
		return 0
	}
	v, _ := strconv.Atoi(m[1])
	return v
}

// TestHybridLinksEverywhere: every node publishes an ML-KEM key, a client
// reaches its gateway with the hybrid handshake, and the links the packet
// then takes between nodes (entry, three layers, exit) are all hybrid.
func TestHybridLinksEverywhere(t *testing.T) {
	var box inbox
	n := testnet.Start(t, testnet.Options{Deliver: box.deliver})
	topo := n.WaitRoutable(10 * time.Second)
	for _, group := range [][]directory.Node{topo.Entry, topo.Exit, topo.Layers[0], topo.Layers[1], topo.Layers[2]} {
		for _, nd := range group {
			if k, ok := nd.KEMKeyFor(topo.Rotation); !ok || len(k) != directory.KEMKeySize {
				t.Fatalf("node %s publishes no KEM key for rotation %d", nd.Identity, topo.Rotation)
			}
		}
	}
	exit := exitIndex(t, n, topo)
	entry := topo.Entry[0]
	entryKEM, _ := entry.KEMKeyFor(topo.Rotation)
	gwKEM, err := link.ParseKEMPublicKey(entryKEM)
	if err != nil {
		t.Fatal(err)
	}
	me, _ := link.GenerateKeyPair(rand.Reader)
	stats := new(link.Stats)
	c, err := link.Dial(context.Background(), entry.ClientsAddr, [32]byte(entry.NoiseKey), link.Config{
		Static: me, Stats: stats,
		PeerKEM: func([32]byte) *link.KEMPublicKey { return gwKEM },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if stats.HandshakesHybrid.Load() != 1 {
		t.Fatal("client's link to its gateway is not hybrid")
	}
	route, err := testnet.Route(topo, directory.RoleExit, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("over post-quantum links")
	pkt, _ := sphinx.NewPacket(route, sphinx.Destination{}, msg, sphinx.SizeRegular)
	send := &gatewire.Send{Parity: uint8(topo.Rotation % 2), FirstHop: route[0].Address, Packet: pkt}
	if !c.Send(link.Frame{Kind: link.KindClient, Payload: send.AppendBinary(nil)}) {
		t.Fatal("queue full")
	}
	poll.Until(t, 10*time.Second, "delivery at the exit", func() bool { return box.count(exit, msg) == 1 })
	for _, id := range []directory.Key{entry.Identity, topo.Layers[0][0].Identity, topo.Layers[1][0].Identity, topo.Layers[2][0].Identity, topo.Exit[0].Identity} {
		nd := nodeByID(n, id)
		if h, cl := linkEvent(t, nd, "handshakes_hybrid"), linkEvent(t, nd, "handshakes_classical"); h == 0 || cl != 0 {
			t.Errorf("node %d: %d hybrid and %d classical handshakes; want only hybrid", nd.Index, h, cl)
		}
	}
}

// logBuffer collects the log lines of every node.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestNodeRequirePQLinks: a node configured with require_pq_links refuses a
// classical handshake with one clear warning, accepts a hybrid one, and
// announces the requirement in the topology.
func TestNodeRequirePQLinks(t *testing.T) {
	var logs logBuffer
	n := testnet.Start(t, testnet.Options{EpochLength: shortEpoch, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	n.WaitRoutable(10 * time.Second)
	strict := n.AddNode(node.ModeMixnode, func(c *node.Config) { c.RequirePQLinks = true })
	noise := strict.NoiseKey()
	me, _ := link.GenerateKeyPair(rand.Reader)

	if _, err := link.Dial(context.Background(), strict.Config.MixnetListen, noise, link.Config{Static: me}); err == nil {
		t.Fatal("a classical initiator got a link to a node that requires post-quantum links")
	}
	poll.Until(t, 10*time.Second, "the refusal logged", func() bool {
		return strings.Contains(logs.String(), "requires post-quantum links")
	})

	keys, err := nodekey.Load(strict.Config.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	// The node accepts its rotation's KEM key once it has announced it
	// (its first registration): until then, and should a rotation pass
	// meanwhile, dial again.
	stats := new(link.Stats)
	var lastErr error
	poll.Until(t, 10*time.Second, "a hybrid handshake accepted", func() bool {
		tp, err := n.Topology()
		if err != nil {
			lastErr = err
			return false
		}
		kem, err := keys.KEM(tp.Rotation)
		if err != nil {
			t.Fatal(err)
		}
		pk, err := link.ParseKEMPublicKey(kem.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		c, err := link.Dial(context.Background(), strict.Config.MixnetListen, noise, link.Config{
			Static: me, Stats: stats, PeerKEM: func([32]byte) *link.KEMPublicKey { return pk },
		})
		if lastErr = err; err != nil {
			return false
		}
		c.Close()
		return true
	})
	if stats.HandshakesHybrid.Load() != 1 {
		t.Fatalf("the accepted handshake was not hybrid (last error %v)", lastErr)
	}

	// The next epoch's topology carries the requirement, signed.
	poll.Until(t, 5*shortEpoch+5*time.Second, "a topology announcing the requirement", func() bool {
		tp, err := n.Topology()
		if err != nil {
			return false
		}
		nd, ok := tp.NodeByIdentity(directory.Key(strict.Identity()))
		k, _ := nd.KEMKeyFor(tp.Rotation)
		return ok && nd.RequiresPQ && len(k) == directory.KEMKeySize
	})
}
