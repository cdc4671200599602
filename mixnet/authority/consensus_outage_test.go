package authority

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nym-go/nym/mixnet/directory"
)

// TestAuthorityDownThenCatchesUp: auth3 stops for several epochs; auth1 and
// auth2 keep making a consensus with their two signatures. When auth3
// returns it serves the current consensus at once and signs the following
// ones with the others.
//
// On a busy machine an authority may miss a vote window, and that epoch has
// no consensus: the protocol's timing, not an outage's. So the test waits
// for epochs that have one rather than for given epochs.
func TestAuthorityDownThenCatchesUp(t *testing.T) {
	tn := newTestNet(t, 3, 2)
	for i := range 3 {
		tn.start(i)
	}
	nodes := network(t)
	tn.register(nodes...)
	tn.waitRoutableEpoch(0, 2)

	tn.stop(2)
	down := tn.epochNow()
	twoSigned := 0
	for e := down + 1; e <= down+12 && twoSigned < 2; e++ {
		if pollUntil(tn.epochStart(e+1), func() bool {
			a, ok1 := tn.consensusOf(0, e)
			b, ok2 := tn.consensusOf(1, e)
			return ok1 && ok2 && sameDoc(a, b) && len(tn.signers(a)) == 2 && decode(t, a).Routable() == nil
		}) {
			twoSigned++
		} else {
			t.Logf("epoch %d: no consensus of the two left in time", e)
		}
	}
	if twoSigned < 2 {
		t.Fatalf("with auth3 down, only %d epochs of 12 had a consensus signed by the two left", twoSigned)
	}
	client := directory.NewNetworkClient(tn.net, &http.Client{Timeout: 5 * time.Second})
	if top, err := client.Topology(context.Background()); err != nil || top.Routable() != nil {
		t.Fatalf("client while auth3 is down: %v", err)
	}

	tn.start(2)
	back := tn.epochNow()
	waitFor(t, "auth3 to serve the current consensus", 10*netEpoch, func() bool {
		sc, ok := tn.consensusOf(2, tn.epochNow())
		if !ok {
			return false
		}
		_, err := sc.Verify(tn.net)
		return err == nil
	})
	// A consensus voted after auth3 came back, the same at all three and
	// signed by all three.
	waitFor(t, "all three to sign a later consensus", 20*netEpoch, func() bool {
		for e := tn.epochNow(); e > back && e+1 >= tn.epochNow(); e-- {
			var docs []directory.SignedConsensus
			for i := range 3 {
				if sc, ok := tn.consensusOf(i, e); ok && len(tn.signers(sc)) == 3 {
					docs = append(docs, sc)
				}
			}
			if len(docs) == 3 && sameDoc(docs[0], docs[1]) && sameDoc(docs[1], docs[2]) {
				return true
			}
		}
		return false
	})
}

// TestTwoOfThreeDownClientUsesCacheThenFails: with two authorities of
// three down no new consensus can have k = 2 signatures. A client keeps the
// last one (from the survivor, and from its disk cache once no authority
// answers) while it is fresh, then fails with an error naming every
// authority, promptly.
func TestTwoOfThreeDownClientUsesCacheThenFails(t *testing.T) {
	tn := newTestNet(t, 3, 2)
	for i := range 3 {
		tn.start(i)
	}
	tn.register(network(t)...)
	tn.waitRoutableEpoch(0, 3)

	cache := filepath.Join(t.TempDir(), "consensus.json")
	client := directory.NewNetworkClient(tn.net, &http.Client{Timeout: 5 * time.Second})
	client.CachePath = cache
	last, err := client.Topology(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	tn.stop(1)
	tn.stop(2)
	// The survivor cannot sign alone: it logs the failure and keeps
	// serving the last consensus, which the client takes while fresh.
	waitFor(t, "auth1 to report a failed consensus", 10*netEpoch, func() bool {
		_, ok := tn.auths[0].logs.find("consensus failed")
		return ok
	})
	fresh := directory.NewNetworkClient(tn.net, &http.Client{Timeout: 5 * time.Second})
	fresh.CachePath = cache
	tn.stop(0)
	var lastGood *directory.Topology
	var final error
	waitFor(t, "the cached consensus to expire", 10*netEpoch, func() bool {
		start := time.Now()
		top, err := fresh.Topology(context.Background())
		if took := time.Since(start); took > 10*time.Second {
			t.Fatalf("a fetch with every authority down took %s", took)
		}
		if err == nil {
			if top.Epoch < last.Epoch {
				t.Fatalf("the cache gave epoch %d after %d", top.Epoch, last.Epoch)
			}
			lastGood = top
			return false
		}
		final = err
		return true
	})
	if lastGood == nil {
		t.Fatal("the client never used its cached consensus")
	}
	var noc *directory.NoConsensusError
	if !errors.As(final, &noc) || !errors.Is(final, directory.ErrStaleTopology) {
		t.Fatalf("after expiry: %v", final)
	}
	for _, a := range tn.net.Authorities {
		if !strings.Contains(final.Error(), a.Name) {
			t.Errorf("the error does not name %s: %v", a.Name, final)
		}
	}
	t.Logf("used the cache through epoch %d; then: %v", lastGood.Epoch, final)
}

// TestNetworkRestartAfterOutage: all three authorities down for 3 epochs.
// On restart none has a consensus for the epoch and the nodes' descriptors
// have aged out; they re-issue the last consensus's roles for a grace epoch
// and sign it together, so a routable consensus is served at once.
func TestNetworkRestartAfterOutage(t *testing.T) {
	tn := newTestNet(t, 3, 2)
	// The nodes register once: their descriptors age out during the outage,
	// as a real node's do when it cannot refresh, so the votes after the
	// restart list no one.
	tn.ttl = 2 * netEpoch
	for i := range 3 {
		tn.start(i)
	}
	nodes := network(t)
	// Until the first routable consensus the nodes refresh their
	// descriptors as real ones do: registered once, they would age out
	// before a consensus that a busy machine makes late.
	var before uint64
	var refreshed time.Time
	waitFor(t, "a routable consensus", 30*netEpoch, func() bool {
		if time.Since(refreshed) > tn.ttl/2 {
			tn.register(nodes...)
			refreshed = time.Now()
		}
		e := tn.epochNow()
		sc, ok := tn.consensusOf(0, e)
		if !ok || len(tn.signers(sc)) < tn.net.Threshold || decode(t, sc).Routable() != nil {
			return false
		}
		before = e
		return true
	})
	sc, _ := tn.consensusOf(0, before)
	was := decode(t, sc)
	for i := range 3 {
		tn.stop(i)
	}
	downAt := tn.epochNow()
	waitFor(t, "three epochs down", 10*netEpoch, func() bool { return tn.epochNow() >= downAt+3 })
	for i := range 3 {
		tn.start(i)
	}
	restart := tn.epochNow()
	var now *directory.Topology
	waitFor(t, "a routable consensus after the restart", 10*netEpoch, func() bool {
		for i := range 3 {
			sc, ok := tn.consensusOf(i, tn.epochNow())
			if !ok {
				continue
			}
			if top, err := sc.Verify(tn.net); err == nil && top.Routable() == nil {
				now = top
				return true
			}
		}
		return false
	})
	graced := false
	for _, a := range tn.auths {
		_, ok := a.logs.find("re-issuing the last consensus's roles for a grace epoch")
		graced = graced || ok
	}
	if !graced {
		t.Error("no authority took the grace path")
	}
	if now.Epoch > restart+1 {
		t.Fatalf("restarted in epoch %d, first routable consensus is of epoch %d", restart, now.Epoch)
	}
	for _, n := range nodes {
		r1, l1 := was.RoleOf(n.id())
		r2, l2 := now.RoleOf(n.id())
		if r1 != r2 || l1 != l2 {
			t.Errorf("node %s: %s/%d before, %s/%d after", n.id(), r1, l1, r2, l2)
		}
	}
}
