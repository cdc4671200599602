package authority

import (
	"context"
	"fmt"
	"github.com/nym-go/nym/mixnet/directory"
	"io"
	"net/http"
	"sync"
	"time"
)

// probeHistory is what the directory remembers of a node's health probes.
type probeHistory struct {
	// Results holds the most recent outcomes, oldest first.
	Results             []bool    `json:"results"`
	ConsecutiveFailures int       `json:"consecutive_failures"`
	LastProbe           time.Time `json:"last_probe"`
	LastError           string    `json:"last_error,omitempty"`
}

// record appends one outcome, keeping the newest window results.
func (h *probeHistory) record(err error, at time.Time, window int) {
	ok := err == nil
	h.Results = append(h.Results, ok)
	if over := len(h.Results) - window; over > 0 {
		h.Results = append(h.Results[:0], h.Results[over:]...)
	}
	h.LastProbe = at
	if ok {
		h.ConsecutiveFailures = 0
		h.LastError = ""
	} else {
		h.ConsecutiveFailures++
		h.LastError = err.Error()
	}
}

// score is the success rate over the window: the node's performance.
func (h *probeHistory) score() float64 {
	if len(h.Results) == 0 {
		return 0
	}
	n := 0
	for _, ok := range h.Results {
		if ok {
			n++
		}
	}
	return float64(n) / float64(len(h.Results))
}

// maxProbeBody bounds how much of a health answer is read.
const maxProbeBody = 4 << 10

// newProbeHTTPClient returns the client used for probes. It follows no
// redirects: a node's health is its own, and the directory should not be
// steered at other hosts by whoever registers.
func newProbeHTTPClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:               nil,
			MaxIdleConnsPerHost: 1,
			IdleConnTimeout:     time.Minute,
			DisableCompression:  true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// probe asks http://addr/api/v1/health whether the node is up; any 2xx
// answer within the timeout counts.
func probe(ctx context.Context, client *http.Client, addr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+directory.PathHealth, nil)
	if err != nil {
		return fmt.Errorf("probe %s: %w", addr, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("probe %s: %w", addr, err)
	}
	defer resp.Body.Close()
	// Drain a little so the connection can be reused.
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxProbeBody))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("probe %s: HTTP %s", addr, resp.Status)
	}
	return nil
}

// probeTarget is one node to probe.
type probeTarget struct {
	id   directory.Key
	addr string // announced HTTP address; only its port is used (see admission.check)
	// mixnetAddr, noiseKey and kem are what the proving handshake checks.
	mixnetAddr string
	noiseKey   directory.Key
	kem        []byte
}

// probeAll probes targets with at most parallel checks in flight and
// returns each outcome (nil for success).
func probeAll(ctx context.Context, targets []probeTarget, parallel int, check func(context.Context, probeTarget) error) map[directory.Key]error {
	results := make(map[directory.Key]error, len(targets))
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, max(parallel, 1))
	for _, t := range targets {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return results
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			err := check(ctx, t)
			if ctx.Err() != nil {
				return // shutting down: not the node's fault
			}
			mu.Lock()
			results[t.id] = err
			mu.Unlock()
		}()
	}
	wg.Wait()
	return results
}
