package ticket

import (
	"context"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/cloudflare/circl/blindsign/blindrsa"
	"github.com/nym-go/nym/mixnet/directory"
)

// ErrVoucherRefused means authorities refused the voucher (unknown, used
// with other requests, or for another type); the error carries their text.
var ErrVoucherRefused = errors.New("voucher refused")

// Redeem turns a voucher into tickets: it fetches the verified consensus of
// net for the authorities' ticket keys, asks every authority of net to sign
// the voucher's tickets blind, unblinds and verifies what comes back, and
// adds the tickets with at least k signatures to b. One authority down (any
// n−k) is fine. It returns how many tickets were added.
//
// Everything a redemption sends is derived from b's secret and the voucher
// (the ticket keys and the blinding of each message for each authority), so
// a redemption retried with the same book on the same UTC day sends the
// same requests and authorities answer it again; a ticket b holds already is
// not added twice. Call b.Save afterwards.
func Redeem(ctx context.Context, net *directory.Network, httpc *http.Client, voucher string, b *Book) (int, error) {
	return redeemAt(ctx, net, httpc, voucher, b, time.Now())
}

// AuthorityTimeout bounds one authority's answer to an issuance request,
// so that an authority that accepts connections but never answers delays a
// redemption by at most this much (signing 1000 tickets takes a few seconds).
const AuthorityTimeout = 30 * time.Second

// issuance is one redemption in progress.
type issuance struct {
	v      Voucher
	code   string
	expiry int64
	secret [32]byte
	seeds  [][32]byte
	keys   [][32]byte
}

func redeemAt(ctx context.Context, net *directory.Network, httpc *http.Client, code string, b *Book, now time.Time) (int, error) {
	v, err := ParseVoucher(code)
	if err != nil {
		return 0, err
	}
	top, err := directory.NewNetworkClient(net, httpc).Topology(ctx)
	if err != nil {
		return 0, fmt.Errorf("redeem: %w", err)
	}
	is, err := IssuersFrom(net, top)
	if err != nil {
		return 0, fmt.Errorf("redeem: %w", err)
	}
	b.mu.Lock()
	in := &issuance{v: v, code: v.String(), expiry: ExpiryFor(now), secret: b.secret}
	b.mu.Unlock()
	in.deriveKeys()

	var (
		mu       sync.Mutex
		sigs     = make([][]IssuerSignature, v.Tickets)
		problems []string
		refusals []string
		signers  int
		wg       sync.WaitGroup
	)
	for _, a := range net.Authorities {
		pub, ok := is.Key(a.Key, v.Type, in.expiry)
		if !ok {
			mu.Lock()
			problems = append(problems, fmt.Sprintf("%s: no %s key for expiry %s in the consensus", a.Name, v.Type, time.Unix(in.expiry, 0).UTC().Format(time.DateOnly)))
			mu.Unlock()
			continue
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, AuthorityTimeout)
			defer cancel()
			got, err := in.askAuthority(ctx, httpc, a, pub)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if se, ok := refused(err); ok {
					refusals = append(refusals, fmt.Sprintf("%s: %s", a.Name, se.Message))
				} else {
					problems = append(problems, fmt.Sprintf("%s: %v", a.Name, err))
				}
				return
			}
			signers++
			for i, s := range got {
				sigs[i] = append(sigs[i], IssuerSignature{Authority: a.Key, Sig: s})
			}
		})
	}
	wg.Wait()
	if signers < is.Threshold() {
		msg := fmt.Sprintf("%d of %d authorities signed, %d needed", signers, len(net.Authorities), is.Threshold())
		if len(refusals) > 0 {
			return 0, fmt.Errorf("%w: %s: %s", ErrVoucherRefused, msg, strings.Join(append(refusals, problems...), "; "))
		}
		return 0, fmt.Errorf("redeem: %s: %s", msg, strings.Join(problems, "; "))
	}
	tickets := make([]Ticket, v.Tickets)
	for i := range tickets {
		tickets[i] = Ticket{Type: v.Type, Expiry: in.expiry, Key: in.keys[i], Signatures: sortedSignatures(net, sigs[i])}
		if err := is.CheckTicket(&tickets[i], now); err != nil {
			return 0, fmt.Errorf("redeem: ticket %d does not verify: %w", i, err)
		}
	}
	return b.add(in.seeds, tickets)
}

// sortedSignatures puts signatures in the network file's order, so a
// ticket's encoding does not depend on which authority answered first.
func sortedSignatures(net *directory.Network, sigs []IssuerSignature) []IssuerSignature {
	out := make([]IssuerSignature, 0, len(sigs))
	for _, a := range net.Authorities {
		for _, s := range sigs {
			if s.Authority == a.Key {
				out = append(out, s)
			}
		}
	}
	return out
}

// derive returns 32 bytes of the book secret's PRF for label and parts.
func (in *issuance) derive(label string, parts ...[]byte) [32]byte {
	info := []byte("nym-go/ticket/redeem/v1\x00" + label + "\x00" + in.code)
	for _, p := range parts {
		info = binary.BigEndian.AppendUint16(info, uint16(len(p)))
		info = append(info, p...)
	}
	out, err := hkdf.Key(sha256.New, in.secret[:], nil, string(info), 32)
	if err != nil {
		panic(err) // 32 bytes of SHA-256 HKDF cannot fail
	}
	return [32]byte(out)
}

// deriveKeys makes the ticket keys.
func (in *issuance) deriveKeys() {
	in.seeds = make([][32]byte, in.v.Tickets)
	in.keys = make([][32]byte, in.v.Tickets)
	for i := range in.seeds {
		in.seeds[i] = in.derive("ticket key", binary.BigEndian.AppendUint32(nil, uint32(i)))
		in.keys[i] = [32]byte(ed25519.NewKeyFromSeed(in.seeds[i][:]).Public().(ed25519.PublicKey))
	}
}

// askAuthority blinds every ticket's message for a's key, sends the
// request, and unblinds and checks the answer: it returns one signature per
// ticket.
func (in *issuance) askAuthority(ctx context.Context, httpc *http.Client, a directory.Authority, pub *rsa.PublicKey) ([][]byte, error) {
	c, err := blindrsa.NewClient(variant, pub)
	if err != nil {
		return nil, err
	}
	req := IssueRequest{Voucher: in.code, Type: in.v.Type, Expiry: in.expiry, Blinded: make([][]byte, in.v.Tickets)}
	states := make([]blindrsa.State, in.v.Tickets)
	for i := range req.Blinded {
		// The blinding of message i for authority a: pseudorandom to a,
		// which does not know the book's secret, and the same again on a
		// retry.
		seed := in.derive("blind", a.Key[:], []byte{byte(in.v.Type)}, binary.BigEndian.AppendUint64(nil, uint64(in.expiry)), binary.BigEndian.AppendUint32(nil, uint32(i)))
		msg := Message(in.v.Type, in.expiry, in.keys[i])
		if req.Blinded[i], states[i], err = c.Blind(rand.NewChaCha8(seed), msg); err != nil {
			return nil, fmt.Errorf("blind: %w", err)
		}
	}
	body, err := req.AppendBinary(nil)
	if err != nil {
		return nil, err
	}
	answer, err := call(ctx, httpc, "issue tickets", http.MethodPost, strings.TrimSuffix(a.URL, "/")+directory.PathTicketIssue, body, MaxIssueResponseSize)
	if err != nil {
		return nil, err
	}
	var resp IssueResponse
	if err := resp.UnmarshalBinary(answer); err != nil {
		return nil, err
	}
	if len(resp.Signatures) != len(req.Blinded) {
		return nil, fmt.Errorf("%d signatures for %d messages", len(resp.Signatures), len(req.Blinded))
	}
	out := make([][]byte, len(resp.Signatures))
	for i, bs := range resp.Signatures {
		// Finalize checks the unblinded signature under a's key.
		if out[i], err = c.Finalize(states[i], bs); err != nil {
			return nil, fmt.Errorf("signature %d does not verify: %w", i, err)
		}
	}
	return out, nil
}
