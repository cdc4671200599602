package ticket

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/nym-go/nym/internal/keyfile"
)

// MaxBookTickets bounds the tickets a book holds.
const MaxBookTickets = 20000

// maxBookSize bounds a book file: MaxBookTickets tickets with their keys.
const maxBookSize = 64 << 20

// bookMagic starts a book file, so a stray file is never read as a book.
const bookMagic = "nym-go ticketbook\n"

// ErrNoTickets means the book holds no unspent, unexpired ticket of a type.
var ErrNoTickets = errors.New("no ticket left")

// Book is a client's ticketbook: its tickets with their private keys, how
// many bytes are left of the ticket in use of each type, and the secret its
// redemptions are derived from (so that a retried redemption sends the same
// blinded messages and is answered again). On disk it is a private file
// (mode 0600, refused when others may read it). Its methods are safe for
// concurrent use.
type Book struct {
	mu      sync.Mutex
	secret  [32]byte
	entries []entry
	left    map[Type]uint64
}

type entry struct {
	seed   [32]byte // the ticket key's ed25519 seed
	ticket Ticket
}

// NewBook returns an empty book with a fresh secret.
func NewBook() *Book {
	b := &Book{left: make(map[Type]uint64)}
	rand.Read(b.secret[:])
	return b
}

// LoadBook reads the book at path; a missing file is an empty book.
func LoadBook(path string) (*Book, error) {
	data, err := keyfile.ReadLimit(path, maxBookSize)
	if errors.Is(err, fs.ErrNotExist) {
		return NewBook(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("ticketbook: %w", err)
	}
	b, err := decodeBook(data)
	if err != nil {
		return nil, fmt.Errorf("ticketbook %s: %w", path, err)
	}
	return b, nil
}

// Save writes the book to path atomically (mode 0600), making its
// directory (0700) if missing.
func (b *Book) Save(path string) error {
	b.mu.Lock()
	data, err := b.appendLocked(nil)
	b.mu.Unlock()
	if err != nil {
		return fmt.Errorf("save ticketbook: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), keyfile.DirMode); err != nil {
		return fmt.Errorf("save ticketbook: %w", err)
	}
	err = keyfile.Replace(path, func(f *os.File) error {
		_, err := f.Write(data)
		return err
	})
	if err != nil {
		return fmt.Errorf("save ticketbook: %w", err)
	}
	return nil
}

// Next takes the unexpired ticket of typ that expires first out of the
// book (expired ones are dropped) and returns it with its private key; the
// caller spends it. ErrNoTickets when there is none.
func (b *Book) Next(typ Type, now time.Time) (Ticket, ed25519.PrivateKey, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.dropExpiredLocked(now)
	best := -1
	for i, e := range b.entries {
		if e.ticket.Type == typ && (best < 0 || e.ticket.Expiry < b.entries[best].ticket.Expiry) {
			best = i
		}
	}
	if best < 0 {
		return Ticket{}, nil, fmt.Errorf("%w: %s: run `nymvpn tickets add VOUCHER`", ErrNoTickets, typ)
	}
	e := b.entries[best]
	b.entries = slices.Delete(b.entries, best, best+1)
	return e.ticket, ed25519.NewKeyFromSeed(e.seed[:]), nil
}

// Remaining is how many unexpired tickets of typ the book holds.
func (b *Book) Remaining(typ Type, now time.Time) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, e := range b.entries {
		if e.ticket.Type == typ && e.ticket.Expiry > now.Unix() {
			n++
		}
	}
	return n
}

// Batch is a count of tickets of one type and expiry.
type Batch struct {
	Type   Type
	Expiry time.Time
	Count  int
}

// List counts the unexpired tickets by type and expiry, in that order.
func (b *Book) List(now time.Time) []Batch {
	b.mu.Lock()
	defer b.mu.Unlock()
	count := make(map[[2]int64]int)
	for _, e := range b.entries {
		if e.ticket.Expiry > now.Unix() {
			count[[2]int64{int64(e.ticket.Type), e.ticket.Expiry}]++
		}
	}
	out := make([]Batch, 0, len(count))
	for k, n := range count {
		out = append(out, Batch{Type: Type(k[0]), Expiry: time.Unix(k[1], 0).UTC(), Count: n})
	}
	slices.SortFunc(out, func(a, b Batch) int {
		if a.Type != b.Type {
			return int(a.Type) - int(b.Type)
		}
		return a.Expiry.Compare(b.Expiry)
	})
	return out
}

// Left is how many bytes are left of the ticket of typ in use, as the
// caller last recorded with SetLeft.
func (b *Book) Left(typ Type) uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.left[typ]
}

// SetLeft records how many bytes are left of the ticket of typ in use.
func (b *Book) SetLeft(typ Type, left uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.left[typ] = left
}

// add puts tickets in the book, skipping those it holds already (a retried
// redemption), and reports how many were new.
func (b *Book) add(seeds [][32]byte, tickets []Ticket) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	have := make(map[[32]byte]bool, len(b.entries))
	for _, e := range b.entries {
		have[e.ticket.Key] = true
	}
	added := 0
	for i, t := range tickets {
		if have[t.Key] {
			continue
		}
		if len(b.entries) >= MaxBookTickets {
			return added, fmt.Errorf("ticketbook holds %d tickets, the limit", MaxBookTickets)
		}
		b.entries = append(b.entries, entry{seed: seeds[i], ticket: t})
		have[t.Key] = true
		added++
	}
	return added, nil
}

func (b *Book) dropExpiredLocked(now time.Time) {
	b.entries = slices.DeleteFunc(b.entries, func(e entry) bool { return e.ticket.Expiry <= now.Unix() })
}

// The book file:
//
//	magic ‖ version u8 (1) ‖ secret [32] ‖ types u8 ‖ types × (type u8 ‖ left u64) ‖
//	count u32 ‖ count × (seed [32] ‖ ticket)
func (b *Book) appendLocked(out []byte) ([]byte, error) {
	out = append(out, bookMagic...)
	out = append(out, codecVersion)
	out = append(out, b.secret[:]...)
	types := make([]Type, 0, len(b.left))
	for t := range b.left {
		types = append(types, t)
	}
	slices.Sort(types)
	out = append(out, byte(len(types)))
	for _, t := range types {
		out = append(out, byte(t))
		out = binary.BigEndian.AppendUint64(out, b.left[t])
	}
	out = binary.BigEndian.AppendUint32(out, uint32(len(b.entries)))
	for _, e := range b.entries {
		out = append(out, e.seed[:]...)
		var err error
		if out, err = e.ticket.AppendBinary(out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func decodeBook(data []byte) (*Book, error) {
	if len(data) < len(bookMagic) || string(data[:len(bookMagic)]) != bookMagic {
		return nil, fmt.Errorf("%w: not a ticketbook", ErrMalformed)
	}
	d := decoder{b: data[len(bookMagic):]}
	if v := d.u8(); d.err == nil && v != codecVersion {
		return nil, fmt.Errorf("%w: book version %d, want %d", ErrMalformed, v, codecVersion)
	}
	b := &Book{left: make(map[Type]uint64)}
	d.copy(b.secret[:])
	types := int(d.u8())
	for range types {
		t := Type(d.u8())
		b.left[t] = d.u64()
	}
	n := int(d.u32())
	if d.err != nil {
		return nil, d.err
	}
	if n > MaxBookTickets {
		return nil, fmt.Errorf("%w: %d tickets, limit %d", ErrMalformed, n, MaxBookTickets)
	}
	b.entries = make([]entry, n)
	for i := range b.entries {
		d.copy(b.entries[i].seed[:])
		if d.err != nil {
			return nil, d.err
		}
		rest, err := b.entries[i].ticket.decode(d.b)
		if err != nil {
			return nil, fmt.Errorf("ticket %d: %w", i, err)
		}
		d.b = rest
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the last ticket", ErrMalformed, len(d.b))
	}
	return b, nil
}
