package client

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"testing"
	"time"

	"github.com/nym-go/nym/internal/testnet"
	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/sphinx"
)

// offlineClient is a Client with just enough state to build packets and
// queue them: a topology of real Sphinx keys, no network.
func offlineClient(tb testing.TB) *Client {
	c, _ := offlineClientKeys(tb)
	return c
}

// offlineClientKeys is offlineClient with the nodes' Sphinx keys, to open
// what it builds.
func offlineClientKeys(tb testing.TB) (*Client, map[directory.Key]*sphinx.PrivateKey) {
	t := &directory.Topology{Rotation: 0, RotationEpochs: 24}
	keys := map[directory.Key]*sphinx.PrivateKey{}
	node := func(id byte) directory.Node {
		k := sphinx.GenerateKey()
		keys[directory.Key{id}] = k
		return directory.Node{Identity: directory.Key{id}, Performance: 1, SphinxKeys: []directory.SphinxKey{{Rotation: 0, Key: k.PublicKey()}}}
	}
	t.Entry = []directory.Node{node(100)}
	for l := range t.Layers {
		t.Layers[l] = []directory.Node{node(byte(10*l + 1)), node(byte(10*l + 2))}
	}
	priv, _ := ecdh.X25519().GenerateKey(rand.Reader)
	c := &Client{rnd: newRandomSource(), priv: priv}
	c.routes = &routes{rnd: c.rnd, hopDelay: 15 * time.Millisecond}
	c.routes.topo.Store(t)
	copy(c.addr.Identity[:], priv.PublicKey().Bytes())
	c.addr.Gateway = directory.Key{100}
	c.cfg, _ = (Config{DirectoryURL: "-", DirectoryKey: make([]byte, 32)}).withDefaults()
	c.ctx, c.cancel = context.WithCancel(context.Background())
	tb.Cleanup(c.cancel)
	c.window = make(window, 16)
	c.jobs = make(chan *job, 16)
	c.surbs = newSURBStore(c.cfg.SURBs)
	c.replyKeys = newReplyKeyStore(time.Hour, 1000)
	return c, keys
}

// BenchmarkPacketCreation measures a whole forward packet as the client
// builds it: two routes, the ack packet, sealing, the Sphinx packet.
func BenchmarkPacketCreation(b *testing.B) {
	c := offlineClient(b)
	pt, _ := padPlaintext(&Fragment{SetID: 1, Count: 1, Data: make([]byte, FragmentCapacity)})
	var id [16]byte
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.buildForward(c.addr, pt, id); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "packets/s")
}

// BenchmarkPacketCreationParallel is the same on every core.
func BenchmarkPacketCreationParallel(b *testing.B) {
	c := offlineClient(b)
	pt, _ := padPlaintext(&Fragment{SetID: 1, Count: 1, Data: make([]byte, FragmentCapacity)})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var id [16]byte
		for pb.Next() {
			if _, err := c.buildForward(c.addr, pt, id); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "packets/s")
}

// BenchmarkGoodput sends messages through a loopback network and measures
// the data delivered per second, with every delay off and with Nym's
// defaults. With the defaults the bound is λ × FragmentCapacity
// (50 × 1568 B/s ≈ 78 KB/s); "pct_of_cap" is the share of it reached.
func BenchmarkGoodput(b *testing.B) {
	for _, tc := range []struct {
		name string
		lp   Loopix
		size int
	}{
		{"delays_off", Loopix{}, 1 << 20},
		{"nym_defaults", NymDefaults(), 256 << 10},
	} {
		b.Run(tc.name, func(b *testing.B) {
			n := testnet.Start(b, testnet.Options{})
			lp := tc.lp
			a := connect(b, n, func(c *Config) { c.Loopix = &lp })
			r := connect(b, n, func(c *Config) { c.Loopix = &lp })
			msg := make([]byte, tc.size)
			rand.Read(msg)
			b.SetBytes(int64(tc.size))
			b.ResetTimer()
			start := time.Now()
			for b.Loop() {
				if err := a.Send(context.Background(), r.Address(), msg); err != nil {
					b.Fatal(err)
				}
				m := receive(b, r, 5*time.Minute)
				if !bytes.Equal(m.Data, msg) {
					b.Fatal("message differs")
				}
			}
			elapsed := time.Since(start)
			goodput := float64(tc.size) * float64(b.N) / elapsed.Seconds()
			b.ReportMetric(goodput/1e3, "kB/s")
			if lp.SendInterval > 0 {
				bound := float64(time.Second) / float64(lp.SendInterval) * FragmentCapacity
				b.ReportMetric(100*goodput/bound, "pct_of_cap")
			}
			if s := a.Stats(); s.Retransmissions > 0 {
				b.Logf("retransmissions: %d", s.Retransmissions)
			}
		})
	}
}
