package node_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nym-go/nym/internal/poll"
	"github.com/nym-go/nym/internal/testnet"
	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/gatewire"
	"github.com/nym-go/nym/mixnet/link"
	"github.com/nym-go/nym/mixnet/sphinx"
)

// dialGateway dials topo's entry gateway as a client would, encapsulating
// to kem.
func dialGateway(entry directory.Node, kem directory.KEMKey, stats *link.Stats) (*link.Conn, error) {
	pk, err := link.ParseKEMPublicKey(kem)
	if err != nil {
		return nil, err
	}
	me, _ := link.GenerateKeyPair(rand.Reader)
	return link.Dial(context.Background(), entry.ClientsAddr, [32]byte(entry.NoiseKey), link.Config{
		Static: me, Stats: stats,
		PeerKEM: func([32]byte) *link.KEMPublicKey { return pk },
	})
}

// TestHybridAcrossRotations: with a key rotation every epoch, a network
// keeps carrying packets over hybrid links as its KEM keys rotate: each
// rotation a fresh client link to the gateway, made with the KEM key of the
// topology's rotation, is hybrid and its packet reaches the exit; the
// gateway also accepts the next rotation's key and, during the overlap, the
// previous one's; and no node ever falls back to a classical handshake. Once the overlap after a
// rotation is over, that rotation's KEM key file is gone from the gateway's
// disk, and a handshake naming the key fails while the gateway goes on
// serving the current one.
func TestHybridAcrossRotations(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for several epochs")
	}
	var box inbox
	n := testnet.Start(t, testnet.Options{Deliver: box.deliver, EpochLength: 2 * shortEpoch, RotationEpochs: 1})
	topo := n.WaitRoutable(20 * time.Second)
	first := topo.Rotation
	entry := topo.Entry[0]
	firstKEM, ok := entry.KEMKeyFor(first)
	if !ok {
		t.Fatalf("entry publishes no KEM key for rotation %d", first)
	}
	gw := nodeByID(n, entry.Identity)
	oldFile := filepath.Join(gw.Config.DataDir, fmt.Sprintf("kem-%d.key", first))
	if _, err := os.Stat(oldFile); err != nil {
		t.Fatalf("rotation %d's KEM key file: %v", first, err)
	}

	stats := new(link.Stats)
	hybrid := uint64(0)
	var prevKEM directory.KEMKey
	var prevRotation uint64
	overlapChecks := 0
	for round := 0; round < 3; round++ {
		var tp *directory.Topology
		// Every node has taken up the topology, so holds its Sphinx keys:
		// a packet made for it before then would be dropped, KEM or not.
		poll.Until(t, 20*time.Second, fmt.Sprintf("rotation %d taken up", first+uint64(round)), func() bool {
			var err error
			tp, err = n.Routable(5 * time.Second)
			if err != nil || tp.Rotation < first+uint64(round) {
				return false
			}
			// The entry announces the next rotation's key when it
			// registers in this rotation; on a busy machine the
			// topology may still carry its previous descriptor.
			_, ok := tp.Entry[0].KEMKeyFor(tp.Rotation + 1)
			return ok
		})
		entry := tp.Entry[0]
		kem, ok := entry.KEMKeyFor(tp.Rotation)
		if !ok {
			t.Fatalf("entry publishes no KEM key for rotation %d", tp.Rotation)
		}
		c, err := dialGateway(entry, kem, stats)
		if err != nil {
			t.Fatalf("round %d: dial with rotation %d's key: %v", round, tp.Rotation, err)
		}
		hybrid++
		// The next rotation's key, announced already, works too.
		next, ok := entry.KEMKeyFor(tp.Rotation + 1)
		if !ok {
			t.Fatalf("entry announces no KEM key for the next rotation %d", tp.Rotation+1)
		}
		if nc, err := dialGateway(entry, next, new(link.Stats)); err != nil {
			t.Fatalf("round %d: dial with the next rotation's key: %v", round, err)
		} else {
			nc.Close()
		}
		// And so does the previous rotation's during the overlap (every
		// epoch is a rotation's first here), unless the network has
		// already moved on meanwhile.
		if round > 0 && prevRotation+1 == tp.Rotation {
			if nc, err := dialGateway(entry, prevKEM, new(link.Stats)); err == nil {
				nc.Close()
				overlapChecks++
			} else if now, terr := n.Topology(); terr != nil || now.Epoch == tp.Epoch {
				t.Fatalf("round %d: dial with the previous rotation's key during the overlap: %v", round, err)
			}
		}
		prevKEM, prevRotation = kem, tp.Rotation
		if got := stats.HandshakesHybrid.Load(); got != hybrid || stats.HandshakesClassical.Load() != 0 {
			t.Fatalf("round %d: %d hybrid, %d classical handshakes; want %d, 0", round, got, stats.HandshakesClassical.Load(), hybrid)
		}
		route, err := testnet.Route(tp, directory.RoleExit, time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		msg := fmt.Appendf(nil, "rotation %d", tp.Rotation)
		pkt, _ := sphinx.NewPacket(route, sphinx.Destination{}, msg, sphinx.SizeRegular)
		send := &gatewire.Send{Parity: uint8(tp.Rotation % 2), FirstHop: route[0].Address, Packet: pkt}
		if !c.Send(link.Frame{Kind: link.KindClient, Payload: send.AppendBinary(nil)}) {
			t.Fatal("queue full")
		}
		exit := exitIndex(t, n, tp)
		poll.Until(t, 10*time.Second, "delivery at the exit, "+string(msg), func() bool { return box.count(exit, msg) >= 1 })
		c.Close()
	}
	t.Logf("rotations %d..%d, previous key accepted in %d overlaps", first, prevRotation, overlapChecks)
	for _, nd := range n.Nodes() {
		if !nd.Running() {
			continue
		}
		if h, cl := linkEvent(t, nd, "handshakes_hybrid"), linkEvent(t, nd, "handshakes_classical"); h == 0 || cl != 0 {
			t.Errorf("node %d: %d hybrid and %d classical handshakes; want only hybrid", nd.Index, h, cl)
		}
	}

	// Rotation first+2 or later: first's overlap is over, its key deleted.
	poll.Until(t, 20*time.Second, fmt.Sprintf("rotation %d's KEM key deleted", first), func() bool {
		_, err := os.Stat(oldFile)
		return errors.Is(err, fs.ErrNotExist)
	})
	if c, err := dialGateway(entry, firstKEM, new(link.Stats)); err == nil {
		c.Close()
		t.Fatal("a handshake with a deleted KEM key succeeded")
	}
	tp, err := n.Topology()
	if err != nil {
		t.Fatal(err)
	}
	kem, _ := tp.Entry[0].KEMKeyFor(tp.Rotation)
	poll.Until(t, 10*time.Second, "the gateway still serving", func() bool {
		c, err := dialGateway(tp.Entry[0], kem, new(link.Stats))
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}
