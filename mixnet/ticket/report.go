package ticket

import (
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/nym-go/nym/mixnet/directory"
)

// Limits of redemption.
const (
	// MaxReportSerials bounds the serials of one report; a gateway with
	// more sends several.
	MaxReportSerials = 50000
	// MaxReportSize bounds an encoded Report.
	MaxReportSize = 1 + 32 + 8 + 4 + MaxReportSerials*32 + ed25519.SignatureSize
	// MaxSpentPage bounds the serials of one SpentList.
	MaxSpentPage = 50000
	// MaxSpentListSize bounds an encoded SpentList.
	MaxSpentListSize = 1 + 8 + 4 + MaxSpentPage*(32+8+1)
	// ReportWindow is how far a report's time may be from the authority's
	// clock; an older report is refused as a replay.
	ReportWindow = 5 * time.Minute
)

// ErrReport means a report is not signed by its gateway, or is stale.
var ErrReport = errors.New("ticket report refused")

// Report is what a gateway tells the authorities: the serials of the
// tickets it accepted since its last report, signed with its identity key.
// Authorities take reports only from nodes of the current consensus that
// can be gateways.
type Report struct {
	Gateway [32]byte
	Serials [][32]byte
	// Time is when the report was made, unix seconds.
	Time int64
	// Sig is the gateway identity key's ed25519 signature over reportDomain
	// ‖ gateway ‖ time ‖ count ‖ serials.
	Sig []byte
}

func (r *Report) message() []byte {
	b := make([]byte, 0, len(reportDomain)+32+8+4+32*len(r.Serials))
	b = append(b, reportDomain...)
	b = append(b, r.Gateway[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Time))
	b = binary.BigEndian.AppendUint32(b, uint32(len(r.Serials)))
	for _, s := range r.Serials {
		b = append(b, s[:]...)
	}
	return b
}

// SignReport makes the report of serials by the gateway whose identity key
// is priv.
func SignReport(priv ed25519.PrivateKey, serials [][32]byte, now time.Time) (Report, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return Report{}, fmt.Errorf("sign report: private key has %d bytes, want %d", len(priv), ed25519.PrivateKeySize)
	}
	if len(serials) > MaxReportSerials {
		return Report{}, fmt.Errorf("sign report: %d serials, limit %d", len(serials), MaxReportSerials)
	}
	r := Report{Gateway: [32]byte(priv.Public().(ed25519.PublicKey)), Serials: serials, Time: now.Unix()}
	r.Sig = ed25519.Sign(priv, r.message())
	return r, nil
}

// Check verifies the report's signature by its gateway and that its time is
// within ReportWindow of now. Whether the gateway is a node of the
// consensus is the authority's to judge.
func (r *Report) Check(now time.Time) error {
	if len(r.Sig) != ed25519.SignatureSize || !ed25519.Verify(ed25519.PublicKey(r.Gateway[:]), r.message(), r.Sig) {
		return fmt.Errorf("%w: not signed by gateway %s", ErrReport, directory.Key(r.Gateway))
	}
	if !within(r.Time, now, ReportWindow) {
		return fmt.Errorf("%w: made at %s, more than %s from the authority's clock (%s)", ErrReport,
			time.Unix(r.Time, 0).UTC().Format(time.RFC3339), ReportWindow, now.UTC().Format(time.RFC3339))
	}
	return nil
}

// AppendBinary appends the report's encoding:
//
//	version u8 (1) ‖ gateway [32] ‖ time i64 ‖ count u32 ‖ count × serial [32] ‖ signature [64]
func (r *Report) AppendBinary(b []byte) ([]byte, error) {
	if len(r.Serials) > MaxReportSerials {
		return b, fmt.Errorf("encode report: %d serials, limit %d", len(r.Serials), MaxReportSerials)
	}
	if len(r.Sig) != ed25519.SignatureSize {
		return b, fmt.Errorf("encode report: signature has %d bytes, want %d", len(r.Sig), ed25519.SignatureSize)
	}
	b = append(b, codecVersion)
	b = append(b, r.Gateway[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Time))
	b = binary.BigEndian.AppendUint32(b, uint32(len(r.Serials)))
	for _, s := range r.Serials {
		b = append(b, s[:]...)
	}
	return append(b, r.Sig...), nil
}

// UnmarshalBinary decodes a report; b must hold exactly one.
func (r *Report) UnmarshalBinary(b []byte) error {
	if len(b) > MaxReportSize {
		return fmt.Errorf("%w: report of %d bytes, limit %d", ErrMalformed, len(b), MaxReportSize)
	}
	d := decoder{b: b}
	if v := d.u8(); d.err == nil && v != codecVersion {
		return fmt.Errorf("%w: report version %d, want %d", ErrMalformed, v, codecVersion)
	}
	var out Report
	d.copy(out.Gateway[:])
	out.Time = int64(d.u64())
	n := int(d.u32())
	if d.err != nil {
		return fmt.Errorf("report: %w", d.err)
	}
	if n > MaxReportSerials {
		return fmt.Errorf("%w: report of %d serials, limit %d", ErrMalformed, n, MaxReportSerials)
	}
	if len(d.b) != n*32+ed25519.SignatureSize {
		return fmt.Errorf("%w: report of %d serials has %d bytes after its header, want %d", ErrMalformed, n, len(d.b), n*32+ed25519.SignatureSize)
	}
	out.Serials = make([][32]byte, n)
	for i := range out.Serials {
		d.copy(out.Serials[i][:])
	}
	out.Sig = d.bytes(ed25519.SignatureSize)
	*r = out
	return nil
}

// SpentSerial is a serial some gateway reported.
type SpentSerial struct {
	Serial [32]byte
	// Expiry is when the serial can be forgotten, unix seconds: its ticket
	// has expired by then (the authority sets it MaxLifetime after the
	// first report, as it does not learn the ticket's own expiry).
	Expiry int64
	// Double is set when two gateways reported the serial: a double spend.
	Double bool
}

// SpentList is a page of the serials an authority holds, in the order they
// were reported (a serial comes again, flagged Double, when a second
// gateway reports it). Next is the cursor to ask with for the serials
// after these; it is 0 when the cursor asked with is beyond any the
// authority gave (it lost its state and counts afresh): start over from 0.
type SpentList struct {
	Spent []SpentSerial
	Next  uint64
}

// AppendBinary appends the list's encoding:
//
//	version u8 (1) ‖ next u64 ‖ count u32 ‖ count × (serial [32] ‖ expiry i64 ‖ flags u8)
//
// where flags bit 0 is Double.
func (l *SpentList) AppendBinary(b []byte) ([]byte, error) {
	if len(l.Spent) > MaxSpentPage {
		return b, fmt.Errorf("encode spent list: %d serials, limit %d", len(l.Spent), MaxSpentPage)
	}
	b = append(b, codecVersion)
	b = binary.BigEndian.AppendUint64(b, l.Next)
	b = binary.BigEndian.AppendUint32(b, uint32(len(l.Spent)))
	for _, s := range l.Spent {
		b = append(b, s.Serial[:]...)
		b = binary.BigEndian.AppendUint64(b, uint64(s.Expiry))
		var flags byte
		if s.Double {
			flags = 1
		}
		b = append(b, flags)
	}
	return b, nil
}

// UnmarshalBinary decodes a list; b must hold exactly one.
func (l *SpentList) UnmarshalBinary(b []byte) error {
	if len(b) > MaxSpentListSize {
		return fmt.Errorf("%w: spent list of %d bytes, limit %d", ErrMalformed, len(b), MaxSpentListSize)
	}
	d := decoder{b: b}
	if v := d.u8(); d.err == nil && v != codecVersion {
		return fmt.Errorf("%w: spent list version %d, want %d", ErrMalformed, v, codecVersion)
	}
	var out SpentList
	out.Next = d.u64()
	n := int(d.u32())
	if d.err != nil {
		return fmt.Errorf("spent list: %w", d.err)
	}
	if n > MaxSpentPage || len(d.b) != n*41 {
		return fmt.Errorf("%w: spent list of %d serials in %d bytes", ErrMalformed, n, len(d.b))
	}
	out.Spent = make([]SpentSerial, n)
	for i := range out.Spent {
		s := &out.Spent[i]
		d.copy(s.Serial[:])
		s.Expiry = int64(d.u64())
		flags := d.u8()
		if flags&^1 != 0 {
			return fmt.Errorf("%w: serial %d has unknown flags %#x", ErrMalformed, i, flags)
		}
		s.Double = flags&1 != 0
	}
	*l = out
	return nil
}
