package ticket

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
)

// Voucher is what pays for a ticketbook. Here the network's operators mint
// vouchers (`nym-api vouchers create`) and install the same codes at every
// authority; a real deployment puts its payment behind the same interface:
// whatever proves payment turns into a code an authority accepts once.
//
// A code reads nv1.TYPE.TICKETS.SECRET, e.g.
// nv1.mixnet-entry.50.Qm9gZXhhbXBsZXNlY3JldA: the type and count are
// readable so that a client knows what to ask for; the 128-bit secret is
// what makes it unguessable.
type Voucher struct {
	Type    Type
	Tickets int
	Secret  [16]byte
}

// voucherPrefix versions the code format.
const voucherPrefix = "nv1"

// MaxVoucherLength bounds a voucher code on the wire.
const MaxVoucherLength = 128

var voucherEncoding = base64.RawURLEncoding

// NewVoucher mints a voucher for tickets tickets of typ.
func NewVoucher(typ Type, tickets int) (Voucher, error) {
	if !typ.Known() {
		return Voucher{}, fmt.Errorf("voucher: unknown ticket type %d", typ)
	}
	if tickets < 1 || tickets > MaxIssueTickets {
		return Voucher{}, fmt.Errorf("voucher: %d tickets, want 1..%d", tickets, MaxIssueTickets)
	}
	v := Voucher{Type: typ, Tickets: tickets}
	rand.Read(v.Secret[:])
	return v, nil
}

// String is the voucher's code.
func (v Voucher) String() string {
	return fmt.Sprintf("%s.%s.%d.%s", voucherPrefix, v.Type, v.Tickets, voucherEncoding.EncodeToString(v.Secret[:]))
}

// ParseVoucher reads a voucher code.
func ParseVoucher(code string) (Voucher, error) {
	code = strings.TrimSpace(code)
	if len(code) > MaxVoucherLength {
		return Voucher{}, fmt.Errorf("%w: voucher code of %d characters", ErrMalformed, len(code))
	}
	parts := strings.Split(code, ".")
	if len(parts) != 4 || parts[0] != voucherPrefix {
		return Voucher{}, fmt.Errorf("%w: voucher %q: want %s.TYPE.TICKETS.SECRET", ErrMalformed, truncate(code, 40), voucherPrefix)
	}
	typ, err := ParseType(parts[1])
	if err != nil {
		return Voucher{}, fmt.Errorf("%w: voucher: %v", ErrMalformed, err)
	}
	n, err := strconv.Atoi(parts[2])
	if err != nil || n < 1 || n > MaxIssueTickets || strconv.Itoa(n) != parts[2] {
		return Voucher{}, fmt.Errorf("%w: voucher: ticket count %q, want 1..%d", ErrMalformed, truncate(parts[2], 10), MaxIssueTickets)
	}
	v := Voucher{Type: typ, Tickets: n}
	sec, err := voucherEncoding.Strict().DecodeString(parts[3])
	if err != nil || len(sec) != len(v.Secret) {
		return Voucher{}, fmt.Errorf("%w: voucher secret: want %d base64url characters", ErrMalformed, voucherEncoding.EncodedLen(len(v.Secret)))
	}
	copy(v.Secret[:], sec)
	return v, nil
}
