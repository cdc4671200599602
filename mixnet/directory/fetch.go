package directory

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nym-go/nym/internal/keyfile"
)

// DefaultAuthorityTimeout bounds one attempt at one authority, so that a
// silent authority delays a fetch by at most this much before the next is
// tried.
const DefaultAuthorityTimeout = 10 * time.Second

// NewNetworkClient returns a Client that fetches the consensus of net from
// any of its authorities. hc may be nil (http.DefaultClient); set CachePath
// on the result to keep the last verified consensus on disk.
func NewNetworkClient(net *Network, hc *http.Client) *Client {
	return &Client{Network: net, HTTP: hc}
}

// ForAuthority returns a client of the one authority a, with the same HTTP
// client and clock: what a node uses to register with each authority.
func (c *Client) ForAuthority(a Authority) *Client {
	return &Client{BaseURL: a.URL, Key: a.Key.Ed25519(), HTTP: c.HTTP, Now: c.Now, MaxClockSkew: c.MaxClockSkew, AuthorityTimeout: c.AuthorityTimeout}
}

// AuthorityError is why one authority gave no acceptable consensus.
type AuthorityError struct {
	Authority Authority
	Err       error
}

func (e AuthorityError) Error() string { return fmt.Sprintf("%s: %v", e.Authority, e.Err) }

// NoConsensusError means no authority of the network gave a consensus that
// verifies and is fresh, and no fresh one was cached. It names every
// authority tried and why each failed.
type NoConsensusError struct {
	Tried []AuthorityError
	// Cache is why the cached consensus could not be used (nil when the
	// client keeps no cache).
	Cache error
}

func (e *NoConsensusError) Error() string {
	parts := make([]string, len(e.Tried))
	for i, t := range e.Tried {
		parts[i] = t.Error()
	}
	msg := fmt.Sprintf("no consensus can be had from the %d authorities of the network file: %s", len(e.Tried), strings.Join(parts, "; "))
	if e.Cache != nil {
		msg += "; cached consensus: " + e.Cache.Error()
	}
	return msg
}

// Unwrap lets errors.Is see the authorities' errors.
func (e *NoConsensusError) Unwrap() []error {
	errs := make([]error, 0, len(e.Tried)+1)
	for _, t := range e.Tried {
		errs = append(errs, t.Err)
	}
	if e.Cache != nil {
		errs = append(errs, e.Cache)
	}
	return errs
}

// consensus tries the authorities in random order (so no one of them takes
// every client's load, and a dead one does not always come first) and
// returns the first consensus that verifies under the network file, is fresh
// and is no older than the last one accepted. When none does, it falls back
// on the cached consensus while that is fresh.
func (c *Client) consensus(ctx context.Context) (*Topology, error) {
	net := c.Network
	if err := net.Validate(); err != nil {
		return nil, fmt.Errorf("directory fetch consensus: %w", err)
	}
	c.seedFromCache()
	var tried []AuthorityError
	for _, i := range rand.Perm(len(net.Authorities)) {
		a := net.Authorities[i]
		if err := ctx.Err(); err != nil {
			tried = append(tried, AuthorityError{a, fmt.Errorf("not tried: %w", err)})
			continue
		}
		sc, t, err := c.FetchConsensus(ctx, a, 0)
		if err == nil {
			err = c.accept(t)
		}
		if err != nil {
			tried = append(tried, AuthorityError{a, err})
			continue
		}
		c.saveCache(sc, t)
		return t, nil
	}
	noc := &NoConsensusError{Tried: tried}
	if c.CachePath != "" {
		t, err := c.loadCache()
		if err == nil {
			if err = c.accept(t); err == nil {
				return t, nil
			}
		}
		noc.Cache = err
	}
	return nil, noc
}

// accept checks that t is fresh and no older than the newest consensus
// accepted before, and makes it the newest.
func (c *Client) accept(t *Topology) error {
	if err := c.checkFresh(t); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last != nil && t.Epoch < c.last.Epoch {
		return fmt.Errorf("%w: epoch %d is older than epoch %d, accepted already (a replay, or an authority that is behind)",
			ErrStaleTopology, t.Epoch, c.last.Epoch)
	}
	c.last = t
	return nil
}

// FetchConsensus fetches the consensus of epoch (0: the authority's current
// one) from authority a and verifies it under c.Network. It does not judge
// freshness.
func (c *Client) FetchConsensus(ctx context.Context, a Authority, epoch uint64) (SignedConsensus, *Topology, error) {
	sc, err := c.FetchSignedConsensus(ctx, a, epoch)
	if err != nil {
		return SignedConsensus{}, nil, err
	}
	t, err := sc.Verify(c.Network)
	if err != nil {
		return SignedConsensus{}, nil, err
	}
	if epoch != 0 && t.Epoch != epoch {
		return SignedConsensus{}, nil, fmt.Errorf("%w: asked for epoch %d, got %d", ErrWrongEpoch, epoch, t.Epoch)
	}
	return sc, t, nil
}

// FetchSignedConsensus fetches authority a's consensus document of epoch
// (0: its current one) with its signatures, unverified: authorities use it
// to collect each other's signatures.
func (c *Client) FetchSignedConsensus(ctx context.Context, a Authority, epoch uint64) (SignedConsensus, error) {
	ctx, cancel := c.attemptContext(ctx)
	defer cancel()
	path := PathTopology
	if epoch != 0 {
		path = PathConsensus + "?epoch=" + strconv.FormatUint(epoch, 10)
	}
	var sc SignedConsensus
	if err := c.doAt(ctx, a.URL, "fetch consensus", http.MethodGet, path, nil, MaxTopologySize+64<<10, &sc); err != nil {
		return SignedConsensus{}, err
	}
	return sc, nil
}

// FetchVote fetches and verifies authority a's vote for epoch under
// c.Network: a vote signed by another key, or for another epoch, is refused.
func (c *Client) FetchVote(ctx context.Context, a Authority, epoch uint64) (*Vote, []Descriptor, SignedVote, error) {
	return c.FetchVoteVia(ctx, a, a, epoch)
}

// FetchVoteVia fetches authority of's vote for epoch from authority via,
// which serves the votes it received as well as its own, and verifies it
// as FetchVote does: so a vote reaches an authority that cannot reach its
// author directly.
func (c *Client) FetchVoteVia(ctx context.Context, via, of Authority, epoch uint64) (*Vote, []Descriptor, SignedVote, error) {
	ctx, cancel := c.attemptContext(ctx)
	defer cancel()
	var sv SignedVote
	path := PathVotes + "?epoch=" + strconv.FormatUint(epoch, 10)
	if via.Key != of.Key {
		path += "&authority=" + of.Key.String()
	}
	if err := c.doAt(ctx, via.URL, "fetch vote", http.MethodGet, path, nil, MaxVoteSize+64<<10, &sv); err != nil {
		return nil, nil, SignedVote{}, err
	}
	v, descs, err := sv.Verify(c.Network, epoch)
	if err != nil {
		return nil, nil, SignedVote{}, err
	}
	if v.Authority != of.Key {
		return nil, nil, SignedVote{}, fmt.Errorf("%w: asked %s for the vote of %s, got one signed by %s", ErrUntrustedDirectory, via.Name, of.Name, v.Authority)
	}
	return v, descs, sv, nil
}

func (c *Client) attemptContext(ctx context.Context) (context.Context, context.CancelFunc) {
	d := c.AuthorityTimeout
	if d <= 0 {
		d = DefaultAuthorityTimeout
	}
	return context.WithTimeout(ctx, d)
}

// seedFromCache makes the cached consensus the newest accepted when the
// client has accepted none yet, so a restarted client does not take an
// older one than it had.
func (c *Client) seedFromCache() {
	if c.CachePath == "" {
		return
	}
	c.mu.Lock()
	seeded := c.last != nil
	c.mu.Unlock()
	if seeded {
		return
	}
	if t, err := c.loadCache(); err == nil {
		c.mu.Lock()
		if c.last == nil {
			c.last = t
		}
		c.mu.Unlock()
	}
}

// loadCache reads and verifies the cached consensus; freshness is judged by
// the caller.
func (c *Client) loadCache() (*Topology, error) {
	f, err := os.Open(c.CachePath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxTopologySize+64<<10+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", c.CachePath, err)
	}
	var sc SignedConsensus
	if err := json.Unmarshal(data, &sc); err != nil {
		return nil, fmt.Errorf("%s: %w", c.CachePath, err)
	}
	t, err := sc.Verify(c.Network)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.CachePath, err)
	}
	if err := c.checkFresh(t); err != nil {
		return nil, fmt.Errorf("%s: %w", c.CachePath, err)
	}
	return t, nil
}

// saveCache writes sc to the cache file, whole or not at all, mode 0600.
// A failure costs only the fallback, so it does not fail the fetch; the
// client has no logger of its own, so it goes to the default one.
func (c *Client) saveCache(sc SignedConsensus, t *Topology) {
	if c.CachePath == "" {
		return
	}
	// Once per epoch: a node fetches often, and each write syncs the disk.
	c.mu.Lock()
	written := c.cachedEpoch != nil && *c.cachedEpoch == t.Epoch
	c.mu.Unlock()
	if written {
		return
	}
	data, err := json.Marshal(sc)
	if err == nil {
		err = keyfile.Replace(c.CachePath, func(f *os.File) error {
			_, err := f.Write(data)
			return err
		})
	}
	if err != nil {
		slog.Warn("directory client: cannot cache the consensus", "path", c.CachePath, "err", err)
		return
	}
	c.mu.Lock()
	c.cachedEpoch = &t.Epoch
	c.mu.Unlock()
}
