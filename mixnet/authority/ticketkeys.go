package authority

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nym-go/nym/internal/keyfile"
	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/ticket"
)

// TicketKeysDir is the directory, in the data dir, of the authority's
// ticket issuer keys: one RSA key per ticket type and expiry day, each in
// its own file TYPE-EXPIRY.pem (PKCS#8 PEM, mode 0600), EXPIRY in unix
// seconds. A key is made the day before its issuance day and deleted once
// the tickets it signed have expired.
const TicketKeysDir = "ticket_keys"

// ticketKeyID names one issuer key.
type ticketKeyID struct {
	typ    ticket.Type
	expiry int64
}

// issuerKeys are the authority's ticket keys.
type issuerKeys struct {
	dir string

	mu   sync.Mutex
	priv map[ticketKeyID]*rsa.PrivateKey
	der  map[ticketKeyID][]byte // public key, PKIX DER
}

// openIssuerKeys loads every key file in dataDir's TicketKeysDir.
func openIssuerKeys(dataDir string) (*issuerKeys, error) {
	k := &issuerKeys{dir: filepath.Join(dataDir, TicketKeysDir), priv: map[ticketKeyID]*rsa.PrivateKey{}, der: map[ticketKeyID][]byte{}}
	entries, err := os.ReadDir(k.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return k, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ticket keys: %w", err)
	}
	for _, e := range entries {
		id, ok := parseTicketKeyName(e.Name())
		if !ok {
			continue // a temporary file left by a crash, or a stranger
		}
		priv, err := loadTicketKey(filepath.Join(k.dir, e.Name()))
		if err != nil {
			return nil, err
		}
		if err := k.add(id, priv); err != nil {
			return nil, err
		}
	}
	return k, nil
}

func ticketKeyName(id ticketKeyID) string {
	return fmt.Sprintf("%s-%d.pem", id.typ, id.expiry)
}

func parseTicketKeyName(name string) (ticketKeyID, bool) {
	base, ok := strings.CutSuffix(name, ".pem")
	i := strings.LastIndexByte(base, '-')
	if !ok || i < 0 {
		return ticketKeyID{}, false
	}
	typ, err := ticket.ParseType(base[:i])
	if err != nil {
		return ticketKeyID{}, false
	}
	expiry, err := strconv.ParseInt(base[i+1:], 10, 64)
	if err != nil {
		return ticketKeyID{}, false
	}
	return ticketKeyID{typ, expiry}, true
}

func loadTicketKey(path string) (*rsa.PrivateKey, error) {
	data, err := keyfile.Read(path)
	if err != nil {
		return nil, fmt.Errorf("ticket key: %w", err)
	}
	parsed, err := parsePKCS8PEM(data)
	if err != nil {
		return nil, fmt.Errorf("ticket key %s: %w", path, err)
	}
	priv, ok := parsed.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("ticket key %s: %T is not an RSA key", path, parsed)
	}
	return priv, nil
}

func (k *issuerKeys) add(id ticketKeyID, priv *rsa.PrivateKey) error {
	der, err := ticket.MarshalPublicKey(&priv.PublicKey)
	if err != nil {
		return err
	}
	if _, err := ticket.ParsePublicKey(der); err != nil {
		return fmt.Errorf("ticket key %s: %w", ticketKeyName(id), err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.priv[id], k.der[id] = priv, der
	return nil
}

// ensure makes the keys of every type for the tickets issued today and
// tomorrow (by now), so that tomorrow's are in the consensus before they
// are used, and deletes the keys whose tickets have all expired. It
// returns how many keys it made.
func (k *issuerKeys) ensure(now time.Time, log *slog.Logger) (int, error) {
	made := 0
	for _, expiry := range []int64{ticket.ExpiryFor(now), ticket.ExpiryFor(now.Add(24 * time.Hour))} {
		for _, typ := range ticket.Types {
			id := ticketKeyID{typ, expiry}
			k.mu.Lock()
			_, ok := k.priv[id]
			k.mu.Unlock()
			if ok {
				continue
			}
			priv, err := ticket.GenerateIssuerKey()
			if err != nil {
				return made, err
			}
			der, err := x509.MarshalPKCS8PrivateKey(priv)
			if err != nil {
				return made, fmt.Errorf("encode ticket key: %w", err)
			}
			path := filepath.Join(k.dir, ticketKeyName(id))
			if err := keyfile.Create(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err != nil {
				if !errors.Is(err, fs.ErrExist) {
					return made, fmt.Errorf("create ticket key: %w", err)
				}
				// Another process (`nym-api init` beside a running
				// authority) made it first: use that one.
				if priv, err = loadTicketKey(path); err != nil {
					return made, err
				}
			} else {
				made++
				log.Info("created ticket issuer key", "type", typ, "expiry", time.Unix(expiry, 0).UTC().Format(time.DateOnly))
			}
			if err := k.add(id, priv); err != nil {
				return made, err
			}
		}
	}
	k.mu.Lock()
	var gone []ticketKeyID
	for id := range k.priv {
		if id.expiry <= now.Unix() {
			gone = append(gone, id)
			delete(k.priv, id)
			delete(k.der, id)
		}
	}
	k.mu.Unlock()
	for _, id := range gone {
		if err := os.Remove(filepath.Join(k.dir, ticketKeyName(id))); err != nil && !errors.Is(err, fs.ErrNotExist) {
			log.Warn("deleting an expired ticket key", "err", err)
		}
	}
	return made, nil
}

// public lists self's public keys whose tickets are still valid at at, in
// the order documents carry them: what the authority puts in its vote.
func (k *issuerKeys) public(self directory.Key, at time.Time) []directory.IssuerKey {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make([]directory.IssuerKey, 0, len(k.der))
	for id, der := range k.der {
		if id.expiry > at.Unix() {
			out = append(out, directory.IssuerKey{Authority: self, Type: uint8(id.typ), Expiry: id.expiry, Key: der})
		}
	}
	// At most 3 types × 9 days: well within MaxIssuerKeysPerAuthority.
	slices.SortFunc(out, directory.CompareIssuerKeys)
	return out
}

// key returns the private key for tickets of typ expiring at expiry.
func (k *issuerKeys) key(typ ticket.Type, expiry int64) (*rsa.PrivateKey, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	priv, ok := k.priv[ticketKeyID{typ, expiry}]
	return priv, ok
}

// EnsureTicketKeys makes the ticket issuer keys dataDir needs at now and
// returns how many it made: what `nym-api init` does, so that a new
// authority publishes its keys from its first vote.
func EnsureTicketKeys(dataDir string, now time.Time, log *slog.Logger) (int, error) {
	k, err := openIssuerKeys(dataDir)
	if err != nil {
		return 0, err
	}
	if log == nil {
		log = slog.Default()
	}
	return k.ensure(now, log)
}
