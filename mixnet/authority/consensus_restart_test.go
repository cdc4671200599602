package authority

import (
	"testing"
	"time"
)

// TestRestartAfterOutageKeepsRoles: a directory down for 3 epochs used to
// publish an empty topology on restart (every descriptor had outlived its
// TTL while the nodes could not refresh). It now serves the last roles for a
// grace epoch, routable at once, and assigns anew at the next boundary.
func TestRestartAfterOutageKeepsRoles(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{DataDir: dir, EpochLength: time.Minute, DescriptorTTL: 2 * time.Minute, Limits: Limits{LayerSize: 1}}
	s, clock := newTestServer(t, cfg)
	nodes := network(t)
	registerAll(t, s, nodes...)
	probeTwice(t, s)
	nextEpoch(s, clock)
	before := s.Topology()
	if err := before.Routable(); err != nil {
		t.Fatal(err)
	}
	s.Close()

	clock.Advance(3 * time.Minute) // three 1-minute epochs down
	cfg.Now, cfg.Logger = clock.Now, testLogger(t)
	s2, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s2.Close() })
	after := s2.Topology()
	if after.Epoch != before.Epoch+3 {
		t.Fatalf("restarted at epoch %d, want %d", after.Epoch, before.Epoch+3)
	}
	if err := after.Routable(); err != nil {
		t.Fatalf("restarted directory after 3 epochs down: %v", err)
	}
	for _, n := range nodes {
		r1, l1 := before.RoleOf(n.id())
		r2, l2 := after.RoleOf(n.id())
		if r1 != r2 || l1 != l2 {
			t.Errorf("node %s: %s/%d before the outage, %s/%d after", n.id(), r1, l1, r2, l2)
		}
	}
}
