package link

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/flynn/noise"
)

// prologue binds the handshake to this protocol and version: a peer speaking
// anything else fails the handshake instead of misreading our frames.
const prologue = "nym-go/link/1"

// maxHandshakeMessage bounds what we read before the peer is authenticated.
// XK messages with empty payloads are 48, 48 and 64 bytes; a hybrid
// message 1 carries a 1096-byte KEM payload (1144 bytes in all).
const maxHandshakeMessage = hybridMessage1Size

var cipherSuite = noise.NewCipherSuite(noise.DH25519, noise.CipherAESGCM, noise.HashSHA256)

// ErrHandshake is wrapped by every handshake failure.
var ErrHandshake = errors.New("noise handshake failed")

// session is the outcome of a handshake: one cipher per direction, the
// authenticated static key of the peer and the kind of handshake.
type session struct {
	send, recv   *transportCipher
	remoteStatic [32]byte
	hybrid       bool // X25519 and ML-KEM; false: X25519 only
}

// newSession turns the CipherStates that end a handshake into a session.
func newSession(send, recv *noise.CipherState, remoteStatic [32]byte, hybrid bool) (session, error) {
	s := session{remoteStatic: remoteStatic, hybrid: hybrid}
	var err error
	if s.send, err = newTransportCipher(send); err != nil {
		return session{}, err
	}
	if s.recv, err = newTransportCipher(recv); err != nil {
		return session{}, err
	}
	return s, nil
}

// handshakeConfig is the Noise configuration of one side: classical XK, or
// hybrid XKpsk2 with its own prologue when hybrid is set. Initiator and
// responder must agree on hybrid, or no message authenticates. rng nil is
// crypto/rand; tests fix it to compare keys.
func handshakeConfig(initiator bool, local KeyPair, remoteStatic []byte, hybrid bool, rng io.Reader) noise.Config {
	c := noise.Config{
		CipherSuite:   cipherSuite,
		Random:        rng,
		Pattern:       noise.HandshakeXK,
		Initiator:     initiator,
		Prologue:      []byte(prologue),
		StaticKeypair: noise.DHKey{Private: local.Private[:], Public: local.Public[:]},
		PeerStatic:    remoteStatic,
	}
	if hybrid {
		c.Prologue = []byte(hybridPrologue)
		// The secret itself is set with SetPresharedKey: the responder
		// learns it only from message 1.
		c.PresharedKeyPlacement = pskPlacement
	}
	return c
}

// initiatorHandshake runs the XK handshake as the connecting side. The
// responder must prove it holds the private half of remoteStatic and, when
// kem is set (hybrid), the KEM key kem was encapsulated to.
func initiatorHandshake(ctx context.Context, nc net.Conn, local KeyPair, remoteStatic [32]byte, kem *kemEncap, timeout time.Duration) (session, error) {
	hs, err := noise.NewHandshakeState(handshakeConfig(true, local, remoteStatic[:], kem != nil, nil))
	if err != nil {
		return session{}, err
	}
	var payload1 []byte
	if kem != nil {
		if err := hs.SetPresharedKey(kem.secret); err != nil {
			return session{}, err
		}
		payload1, _ = kem.payload.MarshalBinary()
	}
	var s session
	err = underDeadline(ctx, nc, timeout, func() error {
		msg, _, _, err := hs.WriteMessage(nil, payload1)
		if err != nil {
			return err
		}
		if err := writeMessage(nc, msg); err != nil {
			return fmt.Errorf("sending message 1: %w", err)
		}
		msg, err = readMessage(nc, maxHandshakeMessage)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) {
			// The responder could not decrypt message 1: it does not hold
			// the key we expected, or it is not a link server at all.
			return fmt.Errorf("responder closed the connection after message 1 (wrong responder key, refused handshake kind, or not a link server): %w", err)
		}
		if err != nil {
			return fmt.Errorf("reading message 2: %w", err)
		}
		payload, _, _, err := hs.ReadMessage(nil, msg)
		if err != nil {
			return fmt.Errorf("message 2 failed authentication (responder does not hold the expected X25519 or KEM key): %w", err)
		}
		if len(payload) != 0 {
			return fmt.Errorf("message 2 has an unexpected %d-byte payload", len(payload))
		}
		msg, send, recv, err := hs.WriteMessage(nil, nil)
		if err != nil {
			return err
		}
		if err := writeMessage(nc, msg); err != nil {
			return fmt.Errorf("sending message 3: %w", err)
		}
		s, err = newSession(send, recv, remoteStatic, kem != nil)
		return err
	})
	return s, err
}

// responderHandshake runs the XK handshake as the accepting side and learns
// the initiator's static key. Message 1's length says which kind the
// initiator chose (classicalMessage1Size or hybridMessage1Size); any other
// length is refused, and a hybrid message needs local to hold the KEM key it
// names. The initiator has firstTimeout to send its first message and
// timeout for the whole handshake.
func responderHandshake(ctx context.Context, nc net.Conn, local KeyPair, firstTimeout, timeout time.Duration) (session, error) {
	var s session
	deadline := time.Now().Add(timeout)
	err := underDeadline(ctx, nc, timeout, func() error {
		if firstTimeout < timeout {
			if err := nc.SetReadDeadline(time.Now().Add(firstTimeout)); err != nil {
				return fmt.Errorf("setting first-message deadline: %w", err)
			}
		}
		msg, err := readMessage(nc, maxHandshakeMessage)
		if err != nil {
			return fmt.Errorf("reading message 1: %w", err)
		}
		if firstTimeout < timeout {
			if err := nc.SetReadDeadline(deadline); err != nil {
				return fmt.Errorf("setting handshake deadline: %w", err)
			}
			// Had ctx ended meanwhile, its past deadline was just
			// overwritten: stop here instead.
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		var hybrid bool
		switch {
		case len(msg) == hybridMessage1Size && local.hasKEM():
			hybrid = true
		case len(msg) == hybridMessage1Size:
			return errors.New("initiator offers a hybrid handshake but this node has no KEM key")
		case len(msg) != classicalMessage1Size:
			return fmt.Errorf("message 1 is %d bytes, neither classical (%d) nor hybrid (%d)", len(msg), classicalMessage1Size, hybridMessage1Size)
		case local.RequirePQ:
			return ErrClassicalRefused
		}
		hs, err := noise.NewHandshakeState(handshakeConfig(false, local, nil, hybrid, nil))
		if err != nil {
			return err
		}
		payload, _, _, err := hs.ReadMessage(nil, msg)
		if err != nil {
			return fmt.Errorf("message 1 (initiator expects another responder key?): %w", err)
		}
		if hybrid {
			secret, err := local.decapsulate(payload)
			if err != nil {
				return fmt.Errorf("message 1: %w", err)
			}
			if err := hs.SetPresharedKey(secret); err != nil {
				return err
			}
		} else if len(payload) != 0 {
			return fmt.Errorf("message 1 has an unexpected %d-byte payload", len(payload))
		}
		msg, _, _, err = hs.WriteMessage(nil, nil)
		if err != nil {
			return err
		}
		if err := writeMessage(nc, msg); err != nil {
			return fmt.Errorf("sending message 2: %w", err)
		}
		msg, err = readMessage(nc, maxHandshakeMessage)
		if err != nil {
			return fmt.Errorf("reading message 3: %w", err)
		}
		payload, recv, send, err := hs.ReadMessage(nil, msg)
		if err != nil {
			return fmt.Errorf("message 3: %w", err)
		}
		if len(payload) != 0 {
			return fmt.Errorf("message 3 has an unexpected %d-byte payload", len(payload))
		}
		var peer [32]byte
		if n := copy(peer[:], hs.PeerStatic()); n != len(peer) {
			return fmt.Errorf("initiator static key is %d bytes", n)
		}
		s, err = newSession(send, recv, peer, hybrid)
		return err
	})
	return s, err
}

// underDeadline runs fn with nc's deadline set to timeout from now, cut short
// if ctx ends first, and clears the deadline afterwards.
func underDeadline(ctx context.Context, nc net.Conn, timeout time.Duration, fn func() error) error {
	if err := nc.SetDeadline(time.Now().Add(timeout)); err != nil {
		return fmt.Errorf("%w: setting deadline: %w", ErrHandshake, err)
	}
	// A deadline in the past wakes any blocked read or write at once.
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	err := fn()
	if !stop() {
		// ctx ended while we ran: its deadline may already be set, so the
		// connection is unusable whatever fn returned.
		return fmt.Errorf("%w: %w", ErrHandshake, context.Cause(ctx))
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrHandshake, err)
	}
	if err := nc.SetDeadline(time.Time{}); err != nil {
		return fmt.Errorf("%w: clearing deadline: %w", ErrHandshake, err)
	}
	return nil
}

// writeMessage sends one length-prefixed message with a single write.
func writeMessage(w io.Writer, msg []byte) error {
	if len(msg) > MaxMessageLen {
		return fmt.Errorf("message of %d bytes exceeds %d", len(msg), MaxMessageLen)
	}
	buf := make([]byte, 2, 2+len(msg))
	binary.BigEndian.PutUint16(buf, uint16(len(msg)))
	_, err := w.Write(append(buf, msg...))
	return err
}

// readMessage reads one length-prefixed message of at most limit bytes. It
// reads exactly the message and nothing after it, so no transport bytes that
// follow the handshake are consumed.
func readMessage(r io.Reader, limit int) ([]byte, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(hdr[:]))
	if n > limit {
		return nil, fmt.Errorf("message length %d exceeds limit %d", n, limit)
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(r, msg); err != nil {
		return nil, err
	}
	return msg, nil
}
