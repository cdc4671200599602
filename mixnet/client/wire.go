package client

import (
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

// newWireBuffer allocates the buffer of one packet. It is not pooled: the
// link holds the frame until its writer copies it out, and says not when.
func newWireBuffer() []byte { return make([]byte, wireLen) }

// dataOffset is where the data starts in a reply, or in a repliable message
// with n SURBs.
func dataOffset(reply bool, n int) int {
	if reply {
		return replyPlainOff + FragmentHeaderLen + 1
	}
	return fwdPlainOff + FragmentHeaderLen + repliableHeaderLen(n)
}
