package gatewire

import (
	"encoding/binary"
	"fmt"
)

// MaxSpendLen bounds a Ticket message's spend. A spend is a ticket (type,
// expiry, key) with one blind RSA signature per authority that signed it,
// and the ticket key's signature: at most some 560 bytes per authority with
// 4096-bit issuer keys, so 48 KiB holds the 64 authorities a network file
// may name (the gateway's tests check it against ticket.MaxSpendSize), and
// stays inside one link frame.
const MaxSpendLen = 48 << 10

// Ticket pays the gateway: Spend is a ticket.Spend in its wire form, bound
// to this gateway's identity and the present time. The gateway decodes and
// verifies it; this package only carries it, so that the wire stays free of
// the ticket package's cryptography. A client sends one when it connects to
// a gateway that asks for it, and again whenever a Quota has WantNext set.
type Ticket struct {
	Spend []byte // 1..MaxSpendLen bytes
}

// Quota flag bits.
const (
	quotaWantNext  = 1 << 0
	quotaUnmetered = 1 << 1
)

// Quota is the gateway's account of the bytes a client has left. A gateway
// sends one when a client connects (so the client learns at once whether it
// must pay), when it accepts a ticket, and when the client's bytes fall
// below a quarter of a ticket's worth, with WantNext set: a client that
// spends its next ticket then never sees its traffic stop. Unmetered says
// the gateway does not require tickets; Left is then 0 and means nothing.
type Quota struct {
	Left      uint64 // bytes the client may still move, both directions together
	WantNext  bool   // show the next ticket now
	Unmetered bool   // this gateway requires no tickets
}

// AppendBinary appends the wire form of m.
func (m *Ticket) AppendBinary(b []byte) []byte {
	return append(append(b, byte(TypeTicket)), m.Spend...)
}

// AppendBinary appends the wire form of m.
func (m *Quota) AppendBinary(b []byte) []byte {
	var flags byte
	if m.WantNext {
		flags |= quotaWantNext
	}
	if m.Unmetered {
		flags |= quotaUnmetered
	}
	return binary.BigEndian.AppendUint64(append(b, byte(TypeQuota), flags), m.Left)
}

func parseTicket(body []byte) (*Ticket, error) {
	if len(body) == 0 || len(body) > MaxSpendLen {
		return nil, fmt.Errorf("%w: ticket of %d bytes", ErrMalformed, len(body))
	}
	return &Ticket{Spend: body}, nil
}

func parseQuota(body []byte) (*Quota, error) {
	if len(body) != 1+8 || body[0]&^(quotaWantNext|quotaUnmetered) != 0 {
		return nil, fmt.Errorf("%w: quota", ErrMalformed)
	}
	m := &Quota{
		WantNext:  body[0]&quotaWantNext != 0,
		Unmetered: body[0]&quotaUnmetered != 0,
		Left:      binary.BigEndian.Uint64(body[1:]),
	}
	if m.Unmetered && (m.WantNext || m.Left != 0) {
		return nil, fmt.Errorf("%w: unmetered quota with a count", ErrMalformed)
	}
	return m, nil
}
