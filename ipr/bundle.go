package ipr

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// LengthPrefixSize is what the bundle codec adds to each IP packet.
const LengthPrefixSize = 2

// maxPacketLen is the largest length a prefix can hold.
const maxPacketLen = 1<<16 - 1

var (
	// ErrBundleFull is returned by BundleEncoder.Add for a packet that does
	// not fit the bundle now but would fit an empty one.
	ErrBundleFull = errors.New("ipr: bundle full")
	// ErrPacketTooBig is returned, wrapped, for a packet that no bundle of
	// the encoder's capacity can hold.
	ErrPacketTooBig = errors.New("ipr: packet too big for a bundle")
)

// MaxIPPacket is the largest IP packet that travels in one payload of
// capacity bytes, in either direction, after the Data header and the length
// prefix: the TUN MTU at both ends of the tunnel. capacity is the usable
// message bytes of one mixnet packet, as the client library reports it;
// pass the smaller of the forward and the reply capacity. IPv6 needs at
// least 1280.
func MaxIPPacket(capacity int) int {
	n := capacity - max(DataUpOverhead, DataDownOverhead) - LengthPrefixSize
	return min(max(n, 0), maxPacketLen)
}

// BundleEncoder packs IP packets into one bundle of at most capacity bytes.
// The zero value is unusable; use NewBundleEncoder.
type BundleEncoder struct {
	buf      []byte
	start    int // where the bundle begins in buf, after the caller's prefix
	capacity int
	packets  int
}

// NewBundleEncoder returns an encoder for bundles of at most capacity bytes,
// starting empty on a fresh buffer.
func NewBundleEncoder(capacity int) *BundleEncoder {
	e := &BundleEncoder{capacity: capacity}
	e.Reset(nil)
	return e
}

// Reset starts a new bundle appended to dst; the bytes already in dst (a
// message header, say) are kept in front and do not count against the
// capacity. The encoder takes dst: the caller must not use it afterwards but
// through Bytes.
func (e *BundleEncoder) Reset(dst []byte) {
	e.buf, e.start, e.packets = dst, len(dst), 0
}

// ResetInPlace starts a new bundle after dst's bytes (a message header,
// say) whose capacity is the room left in dst, cap(dst) − len(dst): the
// bundle is written into dst's array and never reallocates it, so it stays
// in a buffer the caller was handed (a mixnet client's packet buffer). It
// sets the encoder's capacity until the next ResetInPlace, and makes a zero
// BundleEncoder usable.
func (e *BundleEncoder) ResetInPlace(dst []byte) {
	e.Reset(dst)
	e.capacity = cap(dst) - len(dst)
}

// Len is the bundle's length so far.
func (e *BundleEncoder) Len() int { return len(e.buf) - e.start }

// Packets is the number of packets added since Reset.
func (e *BundleEncoder) Packets() int { return e.packets }

// Fits reports whether a packet of n bytes fits the bundle now.
func (e *BundleEncoder) Fits(n int) bool {
	return n > 0 && e.Len()+LengthPrefixSize+n <= e.capacity
}

// Add appends one packet. It returns ErrBundleFull when the packet would fit
// only an emptier bundle, and an error wrapping ErrPacketTooBig when it fits
// no bundle, so the caller can tell "send this bundle first" from "drop it".
func (e *BundleEncoder) Add(pkt []byte) error {
	switch n := len(pkt); {
	case n == 0:
		return fmt.Errorf("ipr: empty packet in a bundle") // it would read as the end of the bundle
	case n > maxPacketLen || LengthPrefixSize+n > e.capacity:
		return fmt.Errorf("%w: %d bytes, bundle holds %d", ErrPacketTooBig, n, e.capacity-LengthPrefixSize)
	case !e.Fits(n):
		return ErrBundleFull
	}
	e.buf = binary.BigEndian.AppendUint16(e.buf, uint16(len(pkt)))
	e.buf = append(e.buf, pkt...)
	e.packets++
	return nil
}

// Bytes returns the caller's prefix followed by the bundle.
func (e *BundleEncoder) Bytes() []byte { return e.buf }

// SplitBundle appends the IP packets of bundle to pkts and returns them with
// the number of malformed entries it skipped. The slices alias bundle. Every
// length is checked: an entry whose length runs past the end of the bundle
// ends the walk (nothing after it can be trusted), and an entry that is not a
// well-formed IPv4 or IPv6 packet of exactly that length is skipped. A zero
// length ends the bundle: what follows is padding.
func SplitBundle(bundle []byte, pkts [][]byte) (_ [][]byte, malformed int) {
	for len(bundle) > 0 {
		if len(bundle) < LengthPrefixSize {
			return pkts, malformed + 1
		}
		n := int(binary.BigEndian.Uint16(bundle))
		if n == 0 {
			break
		}
		bundle = bundle[LengthPrefixSize:]
		if n > len(bundle) {
			return pkts, malformed + 1
		}
		pkt := bundle[:n:n] // a full slice expression, so appending to pkt cannot write over the next one
		bundle = bundle[n:]
		if _, err := parseIP(pkt); err != nil {
			malformed++
			continue
		}
		pkts = append(pkts, pkt)
	}
	return pkts, malformed
}
