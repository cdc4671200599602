package directory

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Limits on network files.
const (
	// MaxNetworkFileSize bounds a network file: a few hundred authorities
	// fit in it, and a network has a handful.
	MaxNetworkFileSize = 64 << 10
	// MaxAuthorities bounds the authorities a network file may name.
	MaxAuthorities = 64
	// maxAuthorityName bounds an authority's name (it appears in logs).
	maxAuthorityName = 64
	// maxAuthorityURL bounds an authority's URL.
	maxAuthorityURL = 512
)

// networkDomain separates the network identifier's hash input.
const networkDomain = "nym-go/directory/network/v1\x00"

// Network is the network file: the directory authorities of a network and
// how many of their signatures a consensus needs. Nodes and clients are
// given it instead of one directory URL and key. Its text form is TOML:
//
//	threshold = 2
//	[[authority]]
//	name = "auth1"
//	key  = "…"   # ed25519 public key, base64url (nym-api init prints it)
//	url  = "http://192.0.2.10:8000"
//
// Threshold (k) must exceed half the authorities (n): two conflicting
// consensus documents of one epoch can then never both gather k signatures,
// since k + k > n means some authority signed both, and an honest one signs
// one document per epoch. n = 1, k = 1 is the single-authority network.
type Network struct {
	Threshold int `toml:"threshold"`
	// Genesis is when epoch 0 began; every authority of the network numbers
	// epochs from it (with the epoch length they are configured with). Zero
	// (absent) is the Unix epoch, 1970-01-01T00:00:00Z.
	Genesis     time.Time   `toml:"genesis,omitempty"`
	Authorities []Authority `toml:"authority"`
}

// Authority is one directory authority of a network file.
type Authority struct {
	// Name labels the authority in logs and errors.
	Name string `toml:"name"`
	// Key is the authority's ed25519 public key: it signs votes and
	// consensus documents.
	Key Key `toml:"key"`
	// URL is the base URL of the authority's API.
	URL string `toml:"url"`
}

func (a Authority) String() string { return fmt.Sprintf("%s (%s)", a.Name, a.URL) }

// LoadNetwork reads and checks the network file at path.
func LoadNetwork(path string) (*Network, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("network file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxNetworkFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("network file %s: %w", path, err)
	}
	n, err := ParseNetwork(data)
	if err != nil {
		return nil, fmt.Errorf("network file %s: %w", path, err)
	}
	return n, nil
}

// ParseNetwork decodes and checks a network file: at most
// MaxNetworkFileSize bytes, no unknown settings, 1..MaxAuthorities
// authorities with unique names, keys and URLs, and n/2 < threshold ≤ n.
func ParseNetwork(data []byte) (*Network, error) {
	if len(data) > MaxNetworkFileSize {
		return nil, fmt.Errorf("%w: network file is larger than %d bytes", ErrInvalid, MaxNetworkFileSize)
	}
	var n Network
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&n)
	if err != nil {
		return nil, fmt.Errorf("%w: network file: %v", ErrInvalid, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		return nil, fmt.Errorf("%w: network file: unknown setting %q", ErrInvalid, truncate(und[0].String(), 50))
	}
	if err := n.Validate(); err != nil {
		return nil, err
	}
	return &n, nil
}

// Validate checks a network built in code as ParseNetwork checks a file.
func (n *Network) Validate() error {
	if len(n.Authorities) == 0 {
		return fmt.Errorf("%w: network file names no [[authority]]", ErrInvalid)
	}
	if len(n.Authorities) > MaxAuthorities {
		return fmt.Errorf("%w: network file names %d authorities, limit %d", ErrInvalid, len(n.Authorities), MaxAuthorities)
	}
	total := len(n.Authorities)
	if n.Threshold <= total/2 || n.Threshold > total {
		return fmt.Errorf("%w: threshold %d with %d authorities: it must be more than half of them and at most all (%d..%d), "+
			"so that two conflicting documents can never both be signed by enough authorities",
			ErrInvalid, n.Threshold, total, total/2+1, total)
	}
	names, keys, urls := map[string]bool{}, map[Key]bool{}, map[string]bool{}
	for i, a := range n.Authorities {
		where := fmt.Sprintf("authority %d (%q)", i+1, truncate(a.Name, maxAuthorityName))
		switch {
		case a.Name == "" || len(a.Name) > maxAuthorityName:
			return fmt.Errorf("%w: %s: name must have 1..%d characters", ErrInvalid, where, maxAuthorityName)
		case names[a.Name]:
			return fmt.Errorf("%w: %s: name used twice", ErrInvalid, where)
		case a.Key.IsZero():
			return fmt.Errorf("%w: %s: key is missing", ErrInvalid, where)
		case keys[a.Key]:
			return fmt.Errorf("%w: %s: key %s used twice", ErrInvalid, where, a.Key)
		}
		if err := checkAuthorityURL(a.URL); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrInvalid, where, err)
		}
		u := strings.TrimSuffix(a.URL, "/")
		if urls[u] {
			return fmt.Errorf("%w: %s: url %q used twice", ErrInvalid, where, truncate(u, 80))
		}
		names[a.Name], keys[a.Key], urls[u] = true, true, true
	}
	return nil
}

func checkAuthorityURL(s string) error {
	if s == "" || len(s) > maxAuthorityURL {
		return fmt.Errorf("url must have 1..%d characters", maxAuthorityURL)
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("url %q: %v", truncate(s, 80), err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("url %q: want http(s)://host[:port][/path]", truncate(s, 80))
	}
	return nil
}

// SingleAuthority is the network of one authority, k = 1: what the old
// directory URL and key pair (--directory, --directory-key) mean.
func SingleAuthority(baseURL string, key Key) *Network {
	return &Network{Threshold: 1, Authorities: []Authority{{Name: "directory", Key: key, URL: baseURL}}}
}

// Authority returns the authority of the network whose key is k.
func (n *Network) Authority(k Key) (Authority, bool) {
	for _, a := range n.Authorities {
		if a.Key == k {
			return a, true
		}
	}
	return Authority{}, false
}

// Majority is how many authorities are more than half of them: how many
// must list a node for it to enter the consensus.
func (n *Network) Majority() int { return len(n.Authorities)/2 + 1 }

// ID names the network by its threshold and authority keys (not their names
// or URLs, which may change). A consensus carries it as its DirectoryKey, so
// a document made for one network never verifies under another.
func (n *Network) ID() Key {
	keys := make([]Key, len(n.Authorities))
	for i, a := range n.Authorities {
		keys[i] = a.Key
	}
	slices.SortFunc(keys, func(a, b Key) int { return bytes.Compare(a[:], b[:]) })
	h := sha256.New()
	h.Write([]byte(networkDomain))
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], uint64(n.Threshold))
	h.Write(k[:])
	for _, key := range keys {
		h.Write(key[:])
	}
	return Key(h.Sum(nil))
}

// Encode returns the network file's TOML text.
func (n *Network) Encode() ([]byte, error) {
	if err := n.Validate(); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "# Directory authorities of the network and how many must sign a consensus.\n")
	fmt.Fprintf(&buf, "threshold = %d\n", n.Threshold)
	if !n.Genesis.IsZero() {
		fmt.Fprintf(&buf, "genesis = %s\n", n.Genesis.UTC().Format(time.RFC3339Nano))
	}
	for _, a := range n.Authorities {
		buf.WriteString("\n[[authority]]\n")
		if err := toml.NewEncoder(&buf).Encode(a); err != nil {
			return nil, fmt.Errorf("encode network file: %w", err)
		}
	}
	return buf.Bytes(), nil
}
