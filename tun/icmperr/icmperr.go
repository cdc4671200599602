// Package icmperr builds the ICMP "packet too big" errors that tell a sender
// its packet did not fit the tunnel, so that path MTU discovery (RFC 1191,
// RFC 8201) shrinks its packets instead of the tunnel black-holing them.
//
// The VPN client and the exit's router both sit where a router would: a
// packet that reaches them larger than the tunnel carries is answered, as a
// router answers for its next hop, with an error from an address of the
// tunnel. Where that address is the receiving host's own (the exit writes
// into its own TUN, whose address is local there), Linux drops the error
// as a martian source; such callers send it from the original packet's
// destination instead, as a host at the far end of the tunnel would. The
// rules of RFC 1122 §3.2.2 and RFC 4443
// §2.4 on when an error must not be sent are kept, and a Responder limits
// how many are sent, so a flood of big packets cannot make us a flood of
// errors.
package icmperr

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/nym-go/nym/tun/ippkt"
)

// Sizes of what TooBig builds.
const (
	// MinIPv6MTU is the least MTU IPv6 allows (RFC 8200 §5); an IPv6
	// error is never longer than this, so it crosses any IPv6 path.
	MinIPv6MTU = header.IPv6MinimumMTU
	// minIPv4MTU is the least MTU every IPv4 host accepts (RFC 791).
	minIPv4MTU = 68
	// quoteV4 is how much of the original's data an IPv4 error carries
	// after its IP header: enough for the ports and the TCP sequence
	// number, which is what the sender needs to find the flow (RFC 792).
	quoteV4 = 8
	// ttl is the hop limit of our errors, as for any packet we originate.
	ttl = 64
	// tosInternetControl is IP precedence 6, which RFC 1812 §4.3.2.5 asks
	// of ICMP errors so that they are queued ahead of data.
	tosInternetControl = 0xc0
)

var (
	// ErrMalformed: the packet is not an IP packet we can read.
	ErrMalformed = errors.New("icmperr: malformed packet")
	// ErrForbidden: the RFCs forbid an error in answer to this packet (an
	// ICMP error, a later fragment, a source that is no single host, an
	// IPv4 packet without DF, …). The packet is dropped without one.
	ErrForbidden = errors.New("icmperr: no ICMP error may answer this packet")
	// ErrNotTooBig: the packet fits the MTU; an error would be a lie.
	ErrNotTooBig = errors.New("icmperr: packet fits the MTU")
	// ErrBadParams: the source address or MTU given to TooBig cannot be
	// used for this packet.
	ErrBadParams = errors.New("icmperr: bad source address or MTU")
	// ErrRateLimited: a Responder's budget of errors is spent for now.
	ErrRateLimited = errors.New("icmperr: rate limited")
)

// TooBig returns the ICMP error telling the sender of pkt that pkt was too
// big for a link of mtu bytes: for IPv4 "fragmentation needed and DF set"
// (type 3 code 4, RFC 1191), quoting the original IP header and the first 8
// bytes of its data; for IPv6 "Packet Too Big" (type 2, RFC 4443 §3.2),
// quoting as much of the original as keeps the error within 1280 bytes.
// The error is a complete IP packet from router to pkt's source, with its
// checksums set; router must be a unicast address of pkt's IP version, or
// the zero Addr to send from pkt's destination.
//
// It returns an error wrapping ErrForbidden when the RFCs forbid an answer:
// for an ICMP error message, a non-first fragment, a source address that
// names no single host (unspecified, multicast, broadcast, loopback), an
// IPv4 broadcast or multicast destination (RFC 1122 §3.2.2), and for an
// IPv4 packet without DF (it may be fragmented, so the sender is not asking
// to learn the MTU). An IPv6 packet to a multicast group is answered, as
// RFC 4443 §2.4 (e.3) asks, so that path MTU discovery works for multicast.
//
// pkt is read, never kept or modified. TooBig does not panic on any input.
func TooBig(pkt []byte, router netip.Addr, mtu int) ([]byte, error) {
	p, err := ippkt.Parse(pkt)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	pkt = pkt[:p.TotalLen] // bytes past the header's length are not the packet's
	if p.TotalLen <= mtu {
		return nil, fmt.Errorf("%w: %d bytes, MTU %d", ErrNotTooBig, p.TotalLen, mtu)
	}
	router = router.Unmap()
	if !router.IsValid() {
		router = p.Dst
	}
	if router.IsMulticast() || router.IsUnspecified() || router == limitedBroadcast {
		// An error from such an address names no router; a multicast
		// destination cannot stand in for one.
		return nil, fmt.Errorf("%w: source %v", ErrBadParams, router)
	}
	if p.Version == 4 {
		if !router.Is4() || mtu < minIPv4MTU {
			return nil, fmt.Errorf("%w: IPv4 error from %v with MTU %d", ErrBadParams, router, mtu)
		}
		return tooBig4(pkt, p, router, mtu)
	}
	if !router.Is6() || mtu < MinIPv6MTU {
		// Below 1280 the link cannot carry IPv6 at all, and hosts ignore
		// a Packet Too Big that claims so (RFC 8201 §4).
		return nil, fmt.Errorf("%w: IPv6 error from %v with MTU %d", ErrBadParams, router, mtu)
	}
	return tooBig6(pkt, p, router, mtu)
}

func tooBig4(pkt []byte, p ippkt.Packet, router netip.Addr, mtu int) ([]byte, error) {
	ip := header.IPv4(pkt)
	switch {
	case ip.Flags()&header.IPv4FlagDontFragment == 0:
		return nil, fmt.Errorf("%w: DF not set", ErrForbidden)
	case ip.FragmentOffset() != 0:
		return nil, fmt.Errorf("%w: non-first fragment", ErrForbidden)
	case !singleHost4(p.Src):
		return nil, fmt.Errorf("%w: source %v", ErrForbidden, p.Src)
	case p.Dst.IsMulticast() || p.Dst == netip.IPv4Unspecified() || p.Dst == limitedBroadcast:
		return nil, fmt.Errorf("%w: destination %v", ErrForbidden, p.Dst)
	case p.Protocol == ippkt.ProtoICMP && !isQuery4(pkt[p.HeaderLen:]):
		return nil, fmt.Errorf("%w: ICMP error or truncated ICMP", ErrForbidden)
	}
	quote := pkt[:min(len(pkt), p.HeaderLen+quoteV4)]
	total := header.IPv4MinimumSize + header.ICMPv4MinimumSize + len(quote)
	out := make([]byte, total)

	icmp := header.ICMPv4(out[header.IPv4MinimumSize:])
	icmp.SetType(header.ICMPv4DstUnreachable)
	icmp.SetCode(header.ICMPv4FragmentationNeeded)
	icmp.SetMTU(uint16(min(mtu, 0xffff)))
	copy(icmp.Payload(), quote)
	icmp.SetChecksum(header.ICMPv4Checksum(icmp[:header.ICMPv4MinimumSize], checksum.Checksum(quote, 0)))

	ip4 := header.IPv4(out)
	ip4.Encode(&header.IPv4Fields{
		TOS:         tosInternetControl,
		TotalLength: uint16(total),
		TTL:         ttl,
		Protocol:    uint8(header.ICMPv4ProtocolNumber),
		SrcAddr:     tcpip.AddrFrom4(router.As4()),
		DstAddr:     tcpip.AddrFrom4(p.Src.As4()),
	})
	ip4.SetChecksum(^ip4.CalculateChecksum())
	return out, nil
}

var limitedBroadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})

// singleHost4 tells whether an IPv4 source names one host, as RFC 1122
// §3.2.2 requires of a packet we answer: not 0.0.0.0/8 (this network),
// loopback, multicast, or class E and the limited broadcast above it. A
// directed broadcast cannot be told from here; the tunnel's addresses are
// hosts.
func singleHost4(a netip.Addr) bool {
	b := a.As4()
	return b[0] != 0 && !a.IsLoopback() && !a.IsMulticast() && b[0] < 240
}

// isQuery4 tells whether icmp is a whole ICMPv4 header of an informational
// message; every other type, unknown ones included, is taken for an error,
// which must never be answered with another (RFC 1122 §3.2.2).
func isQuery4(icmp []byte) bool {
	if len(icmp) < header.ICMPv4MinimumSize {
		return false
	}
	switch header.ICMPv4(icmp).Type() {
	case header.ICMPv4EchoReply, header.ICMPv4Echo,
		header.ICMPv4Timestamp, header.ICMPv4TimestampReply,
		header.ICMPv4InfoRequest, header.ICMPv4InfoReply:
		return true
	}
	return false
}

func tooBig6(pkt []byte, p ippkt.Packet, router netip.Addr, mtu int) ([]byte, error) {
	switch {
	case p.Src.IsUnspecified() || p.Src.IsMulticast() || p.Src.IsLoopback() || p.Src.Is4In6():
		return nil, fmt.Errorf("%w: source %v", ErrForbidden, p.Src)
	case p.Protocol == ippkt.ProtoICMPv6 && p.Fragment:
		// ippkt does not say whether this is the first fragment, so the
		// ICMPv6 type cannot be trusted to be there: it may be an error.
		return nil, fmt.Errorf("%w: fragmented ICMPv6", ErrForbidden)
	case p.Protocol == ippkt.ProtoICMPv6 && (len(pkt)-p.HeaderLen < header.ICMPv6MinimumSize ||
		header.ICMPv6(pkt[p.HeaderLen:]).Type().IsErrorType()):
		return nil, fmt.Errorf("%w: ICMPv6 error or truncated ICMPv6", ErrForbidden)
	}
	// A later fragment (no ICMPv6 in it) may be answered: RFC 4443 forbids
	// no fragment, and the sender needs to learn the MTU all the same.
	quote := pkt[:min(len(pkt), MinIPv6MTU-header.IPv6MinimumSize-header.ICMPv6PacketTooBigMinimumSize)]
	icmpLen := header.ICMPv6PacketTooBigMinimumSize + len(quote)
	out := make([]byte, header.IPv6MinimumSize+icmpLen)

	src, dst := tcpip.AddrFrom16(router.As16()), tcpip.AddrFrom16(p.Src.As16())
	icmp := header.ICMPv6(out[header.IPv6MinimumSize:])
	icmp.SetType(header.ICMPv6PacketTooBig)
	icmp.SetCode(header.ICMPv6UnusedCode)
	icmp.SetMTU(uint32(mtu))
	copy(icmp.Payload(), quote)
	icmp.SetChecksum(header.ICMPv6Checksum(header.ICMPv6ChecksumParams{
		Header:      icmp[:header.ICMPv6PacketTooBigMinimumSize],
		Src:         src,
		Dst:         dst,
		PayloadCsum: checksum.Checksum(quote, 0),
		PayloadLen:  len(quote),
	}))

	header.IPv6(out).Encode(&header.IPv6Fields{
		PayloadLength:     uint16(icmpLen),
		TransportProtocol: header.ICMPv6ProtocolNumber,
		HopLimit:          ttl,
		SrcAddr:           src,
		DstAddr:           dst,
	})
	return out, nil
}

// Responder answers oversized packets with TooBig from fixed addresses, at
// a bounded rate. Each place that drops big packets owns one, so one
// flooding source cannot silence another place's errors. Its methods are
// safe for concurrent use.
type Responder struct {
	v4, v6 netip.Addr
	mu     sync.Mutex
	bucket bucket
}

// Default rate of a Responder: a sender whose packets are too big sends
// them at its own rate until the first error arrives, so a burst covers
// every flow that starts at once and the refill keeps a flood from being
// echoed at packet rate (Linux's icmp_ratelimit is similar, 1 s⁻¹ per peer
// with a burst of 50 and a global 1000 s⁻¹).
const (
	DefaultRate  = 100 // errors per second
	DefaultBurst = 50
)

// NewResponder returns a Responder whose errors come from v4 and v6 (the
// reporting router's addresses; the zero Addr sends from each original
// packet's destination) and number at most burst at once and perSecond
// after.
func NewResponder(v4, v6 netip.Addr, perSecond float64, burst int) *Responder {
	return &Responder{v4: v4.Unmap(), v6: v6, bucket: bucket{rate: perSecond, burst: float64(burst), tokens: float64(burst)}}
}

// TooBig returns the error for pkt as the package's TooBig does, from the
// Responder's address of pkt's family, unless none may be sent or the rate
// is spent (ErrRateLimited). now drives the rate limit.
func (r *Responder) TooBig(pkt []byte, mtu int, now time.Time) ([]byte, error) {
	from := r.v4
	if len(pkt) > 0 && pkt[0]>>4 == 6 {
		from = r.v6
	}
	// Build first: a packet that may not be answered spends no token.
	out, err := TooBig(pkt, from, mtu)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	ok := r.bucket.take(now)
	r.mu.Unlock()
	if !ok {
		return nil, ErrRateLimited
	}
	return out, nil
}

// bucket is a token bucket: tokens accrue at rate per second up to burst,
// and each error takes one.
type bucket struct {
	rate, burst, tokens float64
	last                time.Time
}

func (b *bucket) take(now time.Time) bool {
	if !b.last.IsZero() && now.After(b.last) {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	if b.last.IsZero() || now.After(b.last) {
		b.last = now // a clock that steps back accrues nothing
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
