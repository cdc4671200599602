package ticket

import (
	"encoding/binary"
	"fmt"
)

// MaxIssueTickets bounds the tickets one voucher buys, so one issuance
// request stays a few hundred KB.
const MaxIssueTickets = 1000

// maxBlindedSize bounds one blinded message or blind signature: the size of
// the issuer's modulus.
const maxBlindedSize = MaxIssuerKeyBits / 8

// MaxIssueRequestSize bounds an encoded IssueRequest.
const MaxIssueRequestSize = 1 + 1 + MaxVoucherLength + 1 + 8 + 2 + MaxIssueTickets*(2+maxBlindedSize)

// MaxIssueResponseSize bounds an encoded IssueResponse.
const MaxIssueResponseSize = 1 + 2 + MaxIssueTickets*(2+maxBlindedSize)

// IssueRequest is what a client sends one authority to turn a voucher into
// blind signatures: the voucher, the type and expiry the tickets will
// carry (the authority signs with its key for them), and one message per
// ticket, blinded for this authority's key.
type IssueRequest struct {
	Voucher string
	Type    Type
	Expiry  int64
	Blinded [][]byte
}

// AppendBinary appends the request's encoding:
//
//	version u8 (1) ‖ voucher length u8 ‖ voucher ‖ type u8 ‖ expiry i64 ‖
//	count u16 ‖ count × (length u16 ‖ blinded message)
func (r *IssueRequest) AppendBinary(b []byte) ([]byte, error) {
	if len(r.Voucher) == 0 || len(r.Voucher) > MaxVoucherLength {
		return b, fmt.Errorf("encode issue request: voucher of %d bytes (1..%d)", len(r.Voucher), MaxVoucherLength)
	}
	if len(r.Blinded) == 0 || len(r.Blinded) > MaxIssueTickets {
		return b, fmt.Errorf("encode issue request: %d messages (1..%d)", len(r.Blinded), MaxIssueTickets)
	}
	b = append(b, codecVersion, byte(len(r.Voucher)))
	b = append(b, r.Voucher...)
	b = append(b, byte(r.Type))
	b = binary.BigEndian.AppendUint64(b, uint64(r.Expiry))
	return appendBlobs(b, r.Blinded)
}

// UnmarshalBinary decodes a request; b must hold exactly one.
func (r *IssueRequest) UnmarshalBinary(b []byte) error {
	if len(b) > MaxIssueRequestSize {
		return fmt.Errorf("%w: issue request of %d bytes, limit %d", ErrMalformed, len(b), MaxIssueRequestSize)
	}
	d := decoder{b: b}
	if v := d.u8(); d.err == nil && v != codecVersion {
		return fmt.Errorf("%w: issue request version %d, want %d", ErrMalformed, v, codecVersion)
	}
	var out IssueRequest
	n := int(d.u8())
	if d.err == nil && (n == 0 || n > MaxVoucherLength) {
		return fmt.Errorf("%w: voucher of %d bytes (1..%d)", ErrMalformed, n, MaxVoucherLength)
	}
	out.Voucher = string(d.take(n))
	out.Type = Type(d.u8())
	out.Expiry = int64(d.u64())
	if d.err != nil {
		return fmt.Errorf("issue request: %w", d.err)
	}
	var err error
	if out.Blinded, err = decodeBlobs(&d); err != nil {
		return fmt.Errorf("issue request: %w", err)
	}
	*r = out
	return nil
}

// IssueResponse is an authority's answer: one blind signature per blinded
// message, in order.
type IssueResponse struct {
	Signatures [][]byte
}

// AppendBinary appends the response's encoding:
//
//	version u8 (1) ‖ count u16 ‖ count × (length u16 ‖ blind signature)
func (r *IssueResponse) AppendBinary(b []byte) ([]byte, error) {
	if len(r.Signatures) == 0 || len(r.Signatures) > MaxIssueTickets {
		return b, fmt.Errorf("encode issue response: %d signatures (1..%d)", len(r.Signatures), MaxIssueTickets)
	}
	return appendBlobs(append(b, codecVersion), r.Signatures)
}

// UnmarshalBinary decodes a response; b must hold exactly one.
func (r *IssueResponse) UnmarshalBinary(b []byte) error {
	if len(b) > MaxIssueResponseSize {
		return fmt.Errorf("%w: issue response of %d bytes, limit %d", ErrMalformed, len(b), MaxIssueResponseSize)
	}
	d := decoder{b: b}
	if v := d.u8(); d.err == nil && v != codecVersion {
		return fmt.Errorf("%w: issue response version %d, want %d", ErrMalformed, v, codecVersion)
	}
	if d.err != nil {
		return fmt.Errorf("issue response: %w", d.err)
	}
	sigs, err := decodeBlobs(&d)
	if err != nil {
		return fmt.Errorf("issue response: %w", err)
	}
	r.Signatures = sigs
	return nil
}

// appendBlobs appends count u16 ‖ count × (length u16 ‖ blob).
func appendBlobs(b []byte, blobs [][]byte) ([]byte, error) {
	b = binary.BigEndian.AppendUint16(b, uint16(len(blobs)))
	for i, x := range blobs {
		if len(x) == 0 || len(x) > maxBlindedSize {
			return b, fmt.Errorf("encode: blob %d has %d bytes (1..%d)", i, len(x), maxBlindedSize)
		}
		b = binary.BigEndian.AppendUint16(b, uint16(len(x)))
		b = append(b, x...)
	}
	return b, nil
}

// decodeBlobs reads what appendBlobs wrote, which must end the input.
func decodeBlobs(d *decoder) ([][]byte, error) {
	n := int(d.u16())
	if d.err != nil {
		return nil, d.err
	}
	if n == 0 || n > MaxIssueTickets {
		return nil, fmt.Errorf("%w: %d entries (1..%d)", ErrMalformed, n, MaxIssueTickets)
	}
	out := make([][]byte, n)
	for i := range out {
		l := int(d.u16())
		if d.err == nil && (l == 0 || l > maxBlindedSize) {
			return nil, fmt.Errorf("%w: entry %d has %d bytes (1..%d)", ErrMalformed, i, l, maxBlindedSize)
		}
		out[i] = d.bytes(l)
		if d.err != nil {
			return nil, d.err
		}
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the last entry", ErrMalformed, len(d.b))
	}
	return out, nil
}
