package client

import (
	"sync"

	"github.com/nym-go/nym/mixnet/gatewire"
	"github.com/nym-go/nym/mixnet/sphinx"
)

// A stream packet is built in one buffer, the gateway-bound message whole,
// so that the source's data is written once, where it will travel:
//
//	gatewire Send header  34
//	Sphinx header        348
//	Sphinx payload      2065  integrity 16 ‖ message 2048 ‖ 0x01
//
// where a forward packet's message is
//
//	envelope 419 (flags ‖ ack hop ‖ ack packet) ‖ eph 32 ‖
//	sealed(fragment header 12 ‖ message header ‖ DATA ‖ 0x01 ‖ zeros) ‖ tag 16
//
// and a reply's is fragment header 12 ‖ kind 1 ‖ DATA (the payload's own
// marker and zeros follow).
const (
	// wireLen is a regular packet's Send message.
	wireLen = gatewire.SendHeaderLen + sphinx.RegularPacketSize
	// extWireLen is an extended packet's Send message: a reply through an
	// extended SURB, or extended loop cover. The layout is the same, with
	// a longer message.
	extWireLen = gatewire.SendHeaderLen + sphinx.ExtendedPacketSize
	// packetOff is where the Sphinx packet starts.
	packetOff = gatewire.SendHeaderLen
	// sphinxPayloadOff is where the Sphinx payload starts.
	sphinxPayloadOff = packetOff + sphinx.HeaderSize
	// msgOff is where the Sphinx message starts.
	msgOff = sphinxPayloadOff + sphinx.MessageOffset
	// fwdSealedOff is where a forward message's sealed part (the
	// ephemeral key first) starts.
	fwdSealedOff = msgOff + gatewire.EnvelopeOverhead
	// fwdPlainOff is where a forward message's plaintext (the fragment
	// header first) starts.
	fwdPlainOff = fwdSealedOff + 32
	// replyPlainOff is where a reply's fragment header starts.
	replyPlainOff = msgOff
)

// repliableHeaderLen is the header of a repliable message with n SURBs.
func repliableHeaderLen(n int) int { return 1 + 16 + 2 + n*replySURBSize }

// repliableDataCapacity is the data one tagged packet with n SURBs carries;
// negative when the SURBs alone do not fit.
func repliableDataCapacity(n int) int { return FragmentCapacity - repliableHeaderLen(n) }

// replyDataCapacity is the data one reply packet carries.
const replyDataCapacity = ReplyFragmentCapacity - 1

// replyDataCapacityOf is the data one reply packet of size carries.
func replyDataCapacityOf(size sphinx.Size) int { return int(size) - FragmentHeaderLen - 1 }

// directLinkWindow bounds the stream packets in the gateway link's queue,
// not yet copied out by its writer, when the Poisson stream is off. The
// writer packs up to 64 KiB (27 packets) per system call, so 128 keeps it
// busy through four batches, while a gateway connection that stalls holds
// packets back in the sources' queues after 300 KiB rather than after the
// link's 2048-frame queue (4.8 MiB, seconds of standing delay) overflows.
const directLinkWindow = 128

// wireBuffers recycles packet buffers: the link hands a frame's payload back
// (link.Frame.Done) once its writer has copied it into a Noise message, so a
// stream packet costs no payload-sized allocation in the steady state.
var (
	wireBuffers    = sync.Pool{New: func() any { return new([wireLen]byte) }}
	extWireBuffers = sync.Pool{New: func() any { return new([extWireLen]byte) }}
)

// newWireBuffer returns the zeroed buffer of one packet: the layouts above
// rely on zeros where nothing is written (the padding after the marker).
func newWireBuffer() []byte {
	b := wireBuffers.Get().(*[wireLen]byte)
	clear(b[:])
	return b[:]
}

// newWireBufferOf is newWireBuffer for a packet of size (regular or
// extended).
func newWireBufferOf(size sphinx.Size) []byte {
	if size != sphinx.SizeExtended {
		return newWireBuffer()
	}
	b := extWireBuffers.Get().(*[extWireLen]byte)
	clear(b[:])
	return b[:]
}

// releaseWire takes back a buffer newWireBuffer gave out, once nothing
// reads it any more; anything else is left to the garbage collector.
func releaseWire(b []byte) {
	switch cap(b) {
	case wireLen:
		wireBuffers.Put((*[wireLen]byte)(b[:wireLen]))
	case extWireLen:
		extWireBuffers.Put((*[extWireLen]byte)(b[:extWireLen]))
	}
}

// dataOffset is where the data starts in a reply, or in a repliable message
// with n SURBs.
func dataOffset(reply bool, n int) int {
	if reply {
		return replyPlainOff + FragmentHeaderLen + 1
	}
	return fwdPlainOff + FragmentHeaderLen + repliableHeaderLen(n)
}
