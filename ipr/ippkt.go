package ipr

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/nym-go/nym/tun/ippkt"
)

var errBadPacket = errors.New("ipr: malformed IP packet")

// Header is what the exit needs from an IP packet's headers.
type Header struct {
	Src, Dst netip.Addr
	Proto    uint8  // transport protocol, after any IPv6 extension headers
	DstPort  uint16 // 0 when the protocol has no ports or this is a later fragment
}

// ParseHeader reads a packet's headers with tun/ippkt and insists the
// packet is exactly as long as its header says: inside a bundle, anything
// else means the framing is off.
func ParseHeader(pkt []byte) (Header, error) { return parseIP(pkt) }

func parseIP(pkt []byte) (Header, error) {
	p, err := ippkt.Parse(pkt)
	if err != nil {
		return Header{}, fmt.Errorf("%w: %v", errBadPacket, err)
	}
	if p.TotalLen != len(pkt) {
		return Header{}, fmt.Errorf("%w: %d bytes, header says %d", errBadPacket, len(pkt), p.TotalLen)
	}
	h := Header{Src: p.Src, Dst: p.Dst, Proto: p.Protocol}
	if p.HasPorts {
		h.DstPort = p.DstPort
	}
	return h, nil
}

// WalkBundle calls fn with each well-formed IP packet of bundle and its
// headers, parsed once, and returns the number of malformed entries it
// skipped, by SplitBundle's rules: an entry whose length runs past the end
// of the bundle ends the walk, an entry that is not one well-formed packet
// of exactly that length is skipped, a zero length ends the bundle. pkt
// aliases bundle, with its capacity cut to its length.
func WalkBundle(bundle []byte, fn func(pkt []byte, h Header)) (malformed int) {
	for len(bundle) > 0 {
		if len(bundle) < LengthPrefixSize {
			return malformed + 1
		}
		n := int(binary.BigEndian.Uint16(bundle))
		if n == 0 {
			break
		}
		bundle = bundle[LengthPrefixSize:]
		if n > len(bundle) {
			return malformed + 1
		}
		pkt := bundle[:n:n]
		bundle = bundle[n:]
		h, err := parseIP(pkt)
		if err != nil {
			malformed++
			continue
		}
		fn(pkt, h)
	}
	return malformed
}
