package link

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Frame layout constants; see the package documentation for the wire format.
const (
	// FrameVersion is the only frame version this package reads and writes.
	FrameVersion = 1
	// FrameHeaderLen is the size of the fixed header before each payload.
	FrameHeaderLen = 5
	// MaxMessageLen is the largest Noise message: ciphertext plus tag.
	MaxMessageLen = 65535
	// TagLen is the AEAD tag that ends every Noise transport message.
	TagLen = 16
	// MaxMessagePlaintext is how many frame bytes one transport message holds.
	MaxMessagePlaintext = MaxMessageLen - TagLen
	// MaxFramePayload is the largest payload a single frame can carry: one
	// frame alone filling one transport message.
	MaxFramePayload = MaxMessagePlaintext - FrameHeaderLen
)

// flagKeyParity is flags bit 0; every other flag bit is reserved.
const (
	flagKeyParity     = 1 << 0
	reservedFlagsMask = ^uint8(flagKeyParity)
)

// Kind says what a frame's payload is.
type Kind uint8

// Frame kinds.
const (
	// KindPacket is a Sphinx packet for the receiver to process.
	KindPacket Kind = 1
	// KindClient is a client↔gateway protocol message, defined by the gateway
	// and client packages.
	KindClient Kind = 2
	// KindControl is reserved for link-level control messages. It is accepted
	// on the wire but none are defined yet; a Conn discards them.
	KindControl Kind = 3
)

func (k Kind) valid() bool { return k >= KindPacket && k <= KindControl }

// String names the kind for logs.
func (k Kind) String() string {
	switch k {
	case KindPacket:
		return "packet"
	case KindClient:
		return "client"
	case KindControl:
		return "control"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Frame is one unit of the link protocol.
type Frame struct {
	Kind Kind
	// KeyParity is the Sphinx key-rotation parity: it tells the receiving node
	// which of its two overlapping Sphinx keys the packet was made for
	// (true = odd).
	KeyParity bool
	// Payload is the frame body, at most MaxFramePayload bytes.
	Payload []byte
	// Done, when set, is called with Payload once the link no longer reads
	// it: after the writer copied it into a message, or when the frame is
	// dropped (queue full, invalid, connection closed, write failed). It
	// lets a sender recycle the buffer; it is called at most once, from
	// whichever goroutine let go of the frame, and must not block.
	Done func(payload []byte)
}

// done calls f.Done, if set.
func (f Frame) done() {
	if f.Done != nil {
		f.Done(f.Payload)
	}
}

// Errors that describe why a frame or message was rejected. Decoding errors
// wrap one of them with details.
var (
	ErrFrameVersion   = errors.New("link: unknown frame version")
	ErrFrameKind      = errors.New("link: unknown frame kind")
	ErrFrameFlags     = errors.New("link: reserved frame flags set")
	ErrFrameTruncated = errors.New("link: frame runs past end of message")
	ErrFrameTooLarge  = errors.New("link: frame payload too large")
	ErrEmptyMessage   = errors.New("link: message carries no frames")
)

// EncodedLen is the number of bytes AppendBinary adds.
func (f Frame) EncodedLen() int { return FrameHeaderLen + len(f.Payload) }

// Validate reports whether f can be encoded.
func (f Frame) Validate() error {
	if !f.Kind.valid() {
		return fmt.Errorf("%w: %d", ErrFrameKind, uint8(f.Kind))
	}
	if len(f.Payload) > MaxFramePayload {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, len(f.Payload), MaxFramePayload)
	}
	return nil
}

// AppendBinary appends the encoded frame to b (encoding.BinaryAppender).
func (f Frame) AppendBinary(b []byte) ([]byte, error) {
	if err := f.Validate(); err != nil {
		return b, err
	}
	return f.appendUnchecked(b), nil
}

// MarshalBinary returns the encoded frame (encoding.BinaryMarshaler).
func (f Frame) MarshalBinary() ([]byte, error) {
	return f.AppendBinary(make([]byte, 0, f.EncodedLen()))
}

// appendUnchecked encodes a frame that has already passed Validate.
func (f Frame) appendUnchecked(b []byte) []byte {
	var flags uint8
	if f.KeyParity {
		flags |= flagKeyParity
	}
	b = append(b, FrameVersion, uint8(f.Kind), flags, 0, 0)
	binary.BigEndian.PutUint16(b[len(b)-2:], uint16(len(f.Payload)))
	return append(b, f.Payload...)
}

// DecodeFrame decodes the first frame in b and returns it with the bytes after
// it. The returned payload aliases b. It never panics; any malformed input
// yields an error wrapping one of the ErrFrame* values.
func DecodeFrame(b []byte) (f Frame, rest []byte, err error) {
	if len(b) < FrameHeaderLen {
		return Frame{}, b, fmt.Errorf("%w: %d header bytes, need %d", ErrFrameTruncated, len(b), FrameHeaderLen)
	}
	if b[0] != FrameVersion {
		return Frame{}, b, fmt.Errorf("%w: %d", ErrFrameVersion, b[0])
	}
	kind := Kind(b[1])
	if !kind.valid() {
		return Frame{}, b, fmt.Errorf("%w: %d", ErrFrameKind, b[1])
	}
	flags := b[2]
	if flags&reservedFlagsMask != 0 {
		return Frame{}, b, fmt.Errorf("%w: %#02x", ErrFrameFlags, flags)
	}
	n := int(binary.BigEndian.Uint16(b[3:5]))
	body := b[FrameHeaderLen:]
	if n > len(body) {
		return Frame{}, b, fmt.Errorf("%w: length %d, %d bytes left", ErrFrameTruncated, n, len(body))
	}
	f = Frame{
		Kind:      kind,
		KeyParity: flags&flagKeyParity != 0,
		// Cap the payload so an append by the receiver cannot overwrite the
		// next frame in the same buffer.
		Payload: body[:n:n],
	}
	return f, body[n:], nil
}

// DecodeFrames checks every frame header in msg, the plaintext of one
// transport message, and only then calls fn for each frame in order, so a
// malformed message delivers nothing. Payloads passed to fn alias msg. An
// error from fn stops the walk and is returned.
func DecodeFrames(msg []byte, fn func(Frame) error) error {
	if len(msg) == 0 {
		return ErrEmptyMessage
	}
	for rest := msg; len(rest) > 0; {
		var err error
		if _, rest, err = DecodeFrame(rest); err != nil {
			return err
		}
	}
	for rest := msg; len(rest) > 0; {
		f, next, _ := DecodeFrame(rest)
		if err := fn(f); err != nil {
			return err
		}
		rest = next
	}
	return nil
}

// WireLen is the bytes a frame of payloadLen bytes takes on the wire when it
// travels alone in its Noise message: the 2-byte length, the frame header,
// the payload and the AEAD tag. (Batched frames share the length and the
// tag.) Traces record it as a frame's size.
func WireLen(payloadLen int) int { return 2 + FrameHeaderLen + payloadLen + TagLen }
