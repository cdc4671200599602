package directory

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var testGenesis = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

// epochTopology is a complete topology of epoch with epochs of length.
func epochTopology(t testing.TB, epoch uint64, length time.Duration) *Topology {
	t.Helper()
	top, _ := testTopology(t)
	top.Epoch, top.RotationEpochs, top.Rotation = epoch, 1000, 0
	top.EpochStart = testGenesis.Add(time.Duration(epoch) * length)
	top.EpochLength, top.EpochEnd, top.IssuedAt = length, top.EpochStart.Add(length), top.EpochStart
	return top
}

// fakeAuthority serves whatever consensus body the test sets, or nothing.
type fakeAuthority struct {
	srv  *httptest.Server
	body atomic.Pointer[[]byte]
	hits atomic.Int64
	hang atomic.Bool
}

func (f *fakeAuthority) serve(t testing.TB, sc SignedConsensus) {
	t.Helper()
	b, err := json.Marshal(sc)
	if err != nil {
		t.Fatal(err)
	}
	f.body.Store(&b)
}

// serveAuthorities starts an HTTP server per authority of ta and points the
// network file at them.
func serveAuthorities(t testing.TB, ta *testAuthorities) []*fakeAuthority {
	t.Helper()
	fakes := make([]*fakeAuthority, len(ta.net.Authorities))
	for i := range fakes {
		f := &fakeAuthority{}
		f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			f.hits.Add(1)
			if f.hang.Load() {
				<-r.Context().Done()
				return
			}
			b := f.body.Load()
			if r.URL.Path != PathTopology || b == nil {
				http.Error(w, `{"error":"no consensus yet"}`, http.StatusServiceUnavailable)
				return
			}
			w.Write(*b)
		}))
		t.Cleanup(f.srv.Close)
		ta.net.Authorities[i].URL = f.srv.URL
		fakes[i] = f
	}
	return fakes
}

type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *testClock) Set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.now = t }

func TestNetworkClientNamesEveryAuthorityAndFailsOver(t *testing.T) {
	ta := newTestAuthorities(t, 3, 2)
	fakes := serveAuthorities(t, ta)
	const length = time.Minute
	clock := &testClock{now: testGenesis.Add(10*length + time.Second)}
	top := epochTopology(t, 10, length)

	// auth1: k−1 signatures; auth2: a stranger's signature with its own; auth3: down.
	fakes[0].serve(t, ta.signed(t, top, 0))
	stranger := newDirectoryKey(t)
	sc := ta.signed(t, epochTopology(t, 10, length), 1)
	sc.Signatures = append(sc.Signatures, SignConsensus(stranger, sc.Topology))
	fakes[1].serve(t, sc)
	fakes[2].srv.Close()

	c := NewNetworkClient(ta.net, &http.Client{Timeout: 5 * time.Second})
	c.Now = clock.Now
	_, err := c.Topology(context.Background())
	var noc *NoConsensusError
	if !errors.As(err, &noc) || len(noc.Tried) != 3 || !errors.Is(err, ErrTooFewSignatures) {
		t.Fatalf("want a NoConsensusError naming 3 authorities, got %v", err)
	}
	for _, want := range []string{
		"auth1 (" + fakes[0].srv.URL + "): consensus has too few valid signatures: epoch 10: 1 valid signatures",
		"auth2 (" + fakes[1].srv.URL + "): consensus has too few valid signatures",
		"is not in the network file",
		"auth3 (" + fakes[2].srv.URL + "): directory fetch consensus",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}

	// One authority with a good consensus is enough, wherever it is tried.
	fakes[1].serve(t, ta.signed(t, top, 1, 2))
	for range 10 {
		got, err := c.Topology(context.Background())
		if err != nil || got.Epoch != 10 {
			t.Fatalf("with auth2 serving a good consensus: %v", err)
		}
	}
}

func TestNetworkClientTriesAuthoritiesInRandomOrder(t *testing.T) {
	ta := newTestAuthorities(t, 3, 2)
	fakes := serveAuthorities(t, ta)
	const length = time.Minute
	good := ta.signed(t, epochTopology(t, 4, length), 0, 1, 2)
	for _, f := range fakes {
		f.serve(t, good)
	}
	c := NewNetworkClient(ta.net, nil)
	c.Now = func() time.Time { return testGenesis.Add(4*length + time.Second) }
	// Each fetch asks exactly one authority (the first answers well); over
	// 60 fetches each authority is first about 20 times. All 60 on two
	// authorities has probability 3·(2/3)^60, about 10⁻¹⁰.
	for range 60 {
		if _, err := c.Topology(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	for i, f := range fakes {
		if f.hits.Load() == 0 {
			t.Errorf("authority %d was never tried first in 60 fetches", i+1)
		}
	}
}

func TestNetworkClientRefusesReplayOfOlderEpoch(t *testing.T) {
	ta := newTestAuthorities(t, 3, 2)
	fakes := serveAuthorities(t, ta)
	const length = time.Minute
	clock := &testClock{now: testGenesis.Add(10*length + time.Second)}
	c := NewNetworkClient(ta.net, nil)
	c.Now = clock.Now
	for _, f := range fakes {
		f.serve(t, ta.signed(t, epochTopology(t, 10, length), 0, 1))
	}
	if _, err := c.Topology(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Epoch 9 with every signature is still within CheckFresh's slack, but
	// the client has epoch 10 already.
	for _, f := range fakes {
		f.serve(t, ta.signed(t, epochTopology(t, 9, length), 0, 1, 2))
	}
	_, err := c.Topology(context.Background())
	if !errors.Is(err, ErrStaleTopology) || !strings.Contains(err.Error(), "epoch 9 is older than epoch 10, accepted already") {
		t.Fatalf("replayed epoch 9 after 10: %v", err)
	}
	// A replay of a long-gone epoch is stale even for a new client.
	c2 := NewNetworkClient(ta.net, nil)
	clock.Set(testGenesis.Add(12*length + time.Second))
	c2.Now = clock.Now
	if _, err := c2.Topology(context.Background()); !errors.Is(err, ErrStaleTopology) || !strings.Contains(err.Error(), "epoch 9 ended") {
		t.Fatalf("replayed epoch 9 at epoch 12: %v", err)
	}
}

func TestNetworkClientCacheWhileFreshThenClearError(t *testing.T) {
	ta := newTestAuthorities(t, 3, 2)
	fakes := serveAuthorities(t, ta)
	const length = time.Minute
	clock := &testClock{now: testGenesis.Add(20*length + time.Second)}
	cache := filepath.Join(t.TempDir(), "consensus.json")
	for _, f := range fakes {
		f.serve(t, ta.signed(t, epochTopology(t, 20, length), 0, 2))
	}
	c := NewNetworkClient(ta.net, nil)
	c.Now, c.CachePath = clock.Now, cache
	if _, err := c.Topology(context.Background()); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(cache)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("cache file: %v %v", fi, err)
	}

	// Two authorities down, the third hangs: a new client (a restarted
	// process) uses the cache, and no fetch outlasts the attempt timeouts.
	fakes[0].srv.Close()
	fakes[1].srv.Close()
	fakes[2].hang.Store(true)
	c2 := NewNetworkClient(ta.net, nil)
	c2.Now, c2.CachePath, c2.AuthorityTimeout = clock.Now, cache, 100*time.Millisecond
	for _, at := range []time.Duration{20*length + 30*time.Second, 21*length + 30*time.Second} {
		clock.Set(testGenesis.Add(at))
		got, err := c2.Topology(context.Background())
		if err != nil || got.Epoch != 20 {
			t.Fatalf("at %s with a fresh cache: %v", at, err)
		}
	}
	// Past its slack the cached consensus expires: a clear error.
	clock.Set(testGenesis.Add(22*length + time.Second))
	_, err = c2.Topology(context.Background())
	var noc *NoConsensusError
	if !errors.As(err, &noc) || noc.Cache == nil || !errors.Is(err, ErrStaleTopology) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("expired cache: %v", err)
	}
	for _, a := range ta.net.Authorities {
		if !strings.Contains(err.Error(), a.String()) {
			t.Errorf("error does not name %s: %v", a, err)
		}
	}
	t.Logf("the error: %v", err)

	// A context already done: every authority named as not tried.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c2.Topology(ctx); !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "not tried") {
		t.Fatalf("cancelled: %v", err)
	}
}
