package directory

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Client fetches and verifies topologies from a directory and registers
// descriptors with it. With Network set (see NewNetworkClient) it fetches
// the consensus of a network of authorities instead; BaseURL and Key are
// then used only by Register.
type Client struct {
	// BaseURL is the directory's address, e.g. "http://192.0.2.1:8080".
	BaseURL string
	// Key is the directory's public key, pinned by the caller. Every topology
	// is checked against it.
	Key ed25519.PublicKey
	// Network, when set, is the network file of the authorities: Topology
	// accepts only a consensus signed by its threshold of them.
	Network *Network
	// CachePath, with Network, is a file where the last verified consensus
	// is kept, and used while fresh when no authority answers. Empty: none.
	CachePath string
	// AuthorityTimeout bounds one attempt at one authority; 0 is
	// DefaultAuthorityTimeout.
	AuthorityTimeout time.Duration
	// HTTP makes the requests; nil means http.DefaultClient. Give it a
	// timeout or pass contexts with deadlines.
	HTTP *http.Client
	// Now is the clock topologies are judged fresh by; nil is time.Now.
	Now func() time.Time
	// MaxClockSkew is how far in the future a topology may be issued;
	// 0 is DefaultMaxClockSkew.
	MaxClockSkew time.Duration

	// mu guards last, the newest consensus accepted, so that an older one
	// is never accepted after it, and cachedEpoch, the epoch of the one
	// last written to CachePath.
	mu          sync.Mutex
	last        *Topology
	cachedEpoch *uint64
}

// maxErrorBody bounds how much of an error answer is read into an error.
const maxErrorBody = 4 << 10

// StatusError is returned when the directory answers with a non-2xx status.
type StatusError struct {
	Op         string // "fetch topology", "register"
	StatusCode int
	// Message is the directory's explanation, when it gave one.
	Message string
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("directory %s: HTTP %d %s", e.Op, e.StatusCode, http.StatusText(e.StatusCode))
	if e.Message != "" {
		msg += ": " + e.Message
	}
	return msg
}

// Topology fetches the current topology, verifies it against c.Key and
// checks that it is fresh (Topology.CheckFresh).
func (c *Client) Topology(ctx context.Context) (*Topology, error) {
	if c.Network != nil {
		return c.consensus(ctx)
	}
	if len(c.Key) != ed25519.PublicKeySize {
		return nil, errors.New("directory client: no pinned directory key")
	}
	// A SignedConsensus decodes a SignedTopology too (Signature set); an
	// authority of a network of one serves a consensus it alone signed.
	var sc SignedConsensus
	if err := c.do(ctx, "fetch topology", http.MethodGet, PathTopology, nil, MaxTopologySize+64<<10, &sc); err != nil {
		return nil, err
	}
	t, err := sc.Verify(SingleAuthority(c.BaseURL, Key(c.Key)))
	if err != nil && len(sc.Signatures) > 1 {
		// The usual mistake: one authority of a network given as if it
		// were the whole directory. Its consensus names its network.
		return nil, fmt.Errorf("directory fetch topology from %s: %w (it serves the consensus of a network of authorities: use that network's file, e.g. --network)", c.BaseURL, err)
	}
	if err != nil {
		return nil, fmt.Errorf("directory fetch topology from %s: %w", c.BaseURL, err)
	}
	if err := c.checkFresh(t); err != nil {
		return nil, fmt.Errorf("directory fetch topology from %s: %w", c.BaseURL, err)
	}
	return t, nil
}

// checkFresh is t.CheckFresh with the client's clock and skew.
func (c *Client) checkFresh(t *Topology) error {
	now, skew := time.Now, c.MaxClockSkew
	if c.Now != nil {
		now = c.Now
	}
	if skew <= 0 {
		skew = DefaultMaxClockSkew
	}
	return t.CheckFresh(now(), skew)
}

// Register sends a signed descriptor to the directory.
func (c *Client) Register(ctx context.Context, sd SignedDescriptor) error {
	_, err := c.RegisterWithStatus(ctx, sd)
	return err
}

// RegisterWithStatus is Register returning the directory's answer: the
// current epoch, the node's role and any warnings about its descriptor.
func (c *Client) RegisterWithStatus(ctx context.Context, sd SignedDescriptor) (*Registration, error) {
	body, err := json.Marshal(sd)
	if err != nil {
		return nil, fmt.Errorf("directory register: encode: %w", err)
	}
	var reg Registration
	if err := c.do(ctx, "register", http.MethodPost, PathNodes, body, 64<<10, &reg); err != nil {
		return nil, err
	}
	return &reg, nil
}

// do makes one request and decodes a JSON answer of at most limit bytes.
func (c *Client) do(ctx context.Context, op, method, path string, body []byte, limit int64, out any) error {
	return c.doAt(ctx, c.BaseURL, op, method, path, body, limit, out)
}

// doAt is do against the directory at baseURL.
func (c *Client) doAt(ctx context.Context, baseURL, op, method, path string, body []byte, limit int64, out any) error {
	base := strings.TrimSuffix(baseURL, "/")
	if base == "" {
		return fmt.Errorf("directory %s: no base URL", op)
	}
	var reader io.Reader
	if body != nil {
		reader = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, reader)
	if err != nil {
		return fmt.Errorf("directory %s: %w", op, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("directory %s: %w", op, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		return &StatusError{Op: op, StatusCode: resp.StatusCode, Message: errorMessage(data)}
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return fmt.Errorf("directory %s: reading answer: %w", op, err)
	}
	if int64(len(data)) > limit {
		return fmt.Errorf("directory %s: answer exceeds %d bytes", op, limit)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("directory %s: decoding answer: %w", op, err)
	}
	return nil
}

// errorMessage extracts the directory's {"error": ...} text, or the start of
// whatever else the body holds (a proxy's error page, say).
func errorMessage(body []byte) string {
	var e ErrorResponse
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return e.Error
	}
	return truncate(strings.TrimSpace(string(body)), 200)
}
