package wggate

import (
	"crypto/ed25519"
	"crypto/hpke"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"testing"

	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/link"
	"github.com/nym-go/nym/wgreg"
)

const testRotation = 7

// testKeys are one gateway's keys, as its node would hold them.
type testKeys struct {
	identity directory.Key
	link     link.KeyPair
	hpke     hpke.PrivateKey
	kemPub   []byte
}

func newTestKeys(t testing.TB) *testKeys {
	t.Helper()
	pub, _, _ := ed25519.GenerateKey(nil)
	lk, err := link.GenerateKeyPair(nil)
	if err != nil {
		t.Fatal(err)
	}
	kem, err := link.GenerateKEMKey()
	if err != nil {
		t.Fatal(err)
	}
	lk.KEMKeys = link.NewKEMKeyring(kem)
	priv, err := wgreg.NewPrivateKey(kem.Seed(), lk.Private)
	if err != nil {
		t.Fatal(err)
	}
	return &testKeys{identity: directory.Key(pub), link: lk, hpke: priv, kemPub: kem.PublicKey()}
}

// hpkeKey is Config.HPKEKey: the test's one rotation.
func (k *testKeys) hpkeKey(rot uint64) (hpke.PrivateKey, error) {
	if rot != testRotation {
		return nil, fmt.Errorf("no key for rotation %d", rot)
	}
	return k.hpke, nil
}

// node is the gateway's topology entry with WireGuard at wg.
func (k *testKeys) node(wg netip.AddrPort) directory.Node {
	return directory.Node{
		Identity:     k.identity,
		NoiseKey:     directory.Key(k.link.Public),
		KEMKeys:      []directory.RotationKEMKey{{Rotation: testRotation, Key: k.kemPub}},
		WGAddr:       wg.String(),
		MixnetAddr:   "192.0.2.1:1789",
		HTTPAddr:     "192.0.2.1:8080",
		Capabilities: directory.Capabilities{Entry: true, Exit: true},
	}
}

func (k *testKeys) config(role wgreg.Role, listen netip.AddrPort) Config {
	return Config{
		Role:     role,
		Identity: k.identity,
		Link:     k.link,
		HPKEKey:  k.hpkeKey,
		Listen:   listen,
		Logger:   testLogger(),
	}
}

func testLogger() *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("WGGATE_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// startEntry runs an entry on loopback and returns it with its topology
// entry.
func startEntry(t testing.TB, mutate func(*Config)) (*Gateway, directory.Node, *testKeys) {
	t.Helper()
	k := newTestKeys(t)
	cfg := k.config(wgreg.RoleEntry, netip.MustParseAddrPort("127.0.0.1:0"))
	if mutate != nil {
		mutate(&cfg)
	}
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return g, k.node(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), g.Port())), k
}
