package directory

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// serveTopology serves one signed topology as the directory's current one,
// the way a replaying man in the middle would.
func serveTopology(t *testing.T, top *Topology) *Client {
	t.Helper()
	st, err := SignTopology(fuzzDirKey, top)
	if err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != PathTopology {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}))
	t.Cleanup(ts.Close)
	return &Client{BaseURL: ts.URL, Key: fuzzDirKey.Public().(ed25519.PublicKey), HTTP: &http.Client{Timeout: 10 * time.Second}}
}

// topologyAt is a well-formed topology of an epoch starting at start.
func topologyAt(start time.Time, length time.Duration, issued time.Time) *Topology {
	top := sampleTopology()
	top.Epoch, top.Rotation, top.RotationEpochs = 0, 0, 24
	for _, n := range [][]Node{top.Entry, top.Layers[0]} {
		n[0].SphinxKeys = []SphinxKey{{Rotation: 0, Key: Key{4}}}
	}
	top.EpochStart, top.EpochLength, top.EpochEnd = start, length, start.Add(length)
	top.IssuedAt = issued
	return top
}

// An epoch-0 topology replayed long after its epoch ended must be refused,
// naming the epoch, its end and the time now. It was accepted before.
func TestTopologyStaleRefused(t *testing.T) {
	now := time.Now()
	start := now.Add(-3 * time.Minute)
	top := topologyAt(start, time.Minute, start) // ended 2 minutes (two epochs) ago
	c := serveTopology(t, top)
	got, err := c.Topology(context.Background())
	if err == nil {
		t.Fatalf("a topology whose epoch ended at %s was accepted at %s (epoch %d)", top.EpochEnd, now, got.Epoch)
	}
	if !errors.Is(err, ErrStaleTopology) {
		t.Fatalf("error %v does not wrap ErrStaleTopology", err)
	}
	for _, want := range []string{"epoch 0", top.EpochEnd.UTC().Format(time.RFC3339), "now"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
}

// A topology from the epoch just ended is still used: the directory may be a
// moment late with the next one, and nodes honour it during the boundary.
func TestTopologyPreviousEpochAccepted(t *testing.T) {
	now := time.Now()
	start := now.Add(-90 * time.Second)
	c := serveTopology(t, topologyAt(start, time.Minute, start))
	if _, err := c.Topology(context.Background()); err != nil {
		t.Fatalf("the previous epoch's topology, 30s past its end, was refused: %v", err)
	}
}

// A topology issued (or whose epoch starts) beyond the clock-skew bound in
// the future is refused: it was made by a directory with a wrong clock, or
// prepared to be replayed later.
func TestTopologyFromFutureRefused(t *testing.T) {
	now := time.Now()
	for name, top := range map[string]*Topology{
		"issued": topologyAt(now.Add(-time.Minute), time.Hour, now.Add(time.Hour)),
		"epoch":  topologyAt(now.Add(time.Hour), time.Hour, now.Add(time.Hour)),
	} {
		c := serveTopology(t, top)
		_, err := c.Topology(context.Background())
		if !errors.Is(err, ErrFutureTopology) {
			t.Errorf("%s in the future: got %v, want ErrFutureTopology", name, err)
			continue
		}
		if !strings.Contains(err.Error(), "epoch 0") || !strings.Contains(err.Error(), "now") {
			t.Errorf("%s in the future: error %q does not name the epoch and now", name, err)
		}
	}
	// Within the skew bound it is fine: the clocks of client and directory
	// differ a little.
	c := serveTopology(t, topologyAt(now.Add(30*time.Second), time.Hour, now.Add(30*time.Second)))
	if _, err := c.Topology(context.Background()); err != nil {
		t.Fatalf("a topology 30s ahead of our clock was refused: %v", err)
	}
}

// The client's clock is what freshness is judged by.
func TestTopologyFreshnessUsesClientClock(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := serveTopology(t, topologyAt(start, time.Minute, start))
	c.Now = func() time.Time { return start.Add(30 * time.Second) }
	if _, err := c.Topology(context.Background()); err != nil {
		t.Fatalf("refused at a time inside its epoch: %v", err)
	}
	c.Now = func() time.Time { return start.Add(2*time.Minute + time.Second) }
	if _, err := c.Topology(context.Background()); !errors.Is(err, ErrStaleTopology) {
		t.Fatalf("one epoch and a second past its end: got %v, want ErrStaleTopology", err)
	}
}
