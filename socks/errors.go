package socks

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"syscall"
)

// Reply is a SOCKS5 reply code (RFC 1928 §6). SOCKS4 replies are derived
// from it, so one mapping from errors serves both protocols.
type Reply byte

// SOCKS5 reply codes.
const (
	ReplySucceeded           Reply = 0x00
	ReplyGeneralFailure      Reply = 0x01
	ReplyNotAllowed          Reply = 0x02 // connection not allowed by ruleset
	ReplyNetworkUnreachable  Reply = 0x03
	ReplyHostUnreachable     Reply = 0x04
	ReplyConnectionRefused   Reply = 0x05
	ReplyTTLExpired          Reply = 0x06 // also used for timeouts
	ReplyCommandNotSupported Reply = 0x07 // also used for malformed requests
	ReplyAddressNotSupported Reply = 0x08
)

// SOCKS4 reply codes (the CD field of a SOCKS4 reply).
const (
	socks4Granted  = 0x5A
	socks4Rejected = 0x5B
	socks4BadUser  = 0x5D // "user id mismatch": our answer to a refused user id
)

var replyNames = map[Reply]string{
	ReplySucceeded:           "succeeded",
	ReplyGeneralFailure:      "general failure",
	ReplyNotAllowed:          "connection not allowed by ruleset",
	ReplyNetworkUnreachable:  "network unreachable",
	ReplyHostUnreachable:     "host unreachable",
	ReplyConnectionRefused:   "connection refused",
	ReplyTTLExpired:          "TTL expired",
	ReplyCommandNotSupported: "command not supported",
	ReplyAddressNotSupported: "address type not supported",
}

func (r Reply) String() string {
	if s, ok := replyNames[r]; ok {
		return s
	}
	return "unknown reply"
}

// ErrPolicy is what a Dialer returns (possibly wrapped) to refuse a
// destination, e.g. for an exit policy; the client sees "connection not
// allowed by ruleset" (SOCKS5 0x02) rather than a generic failure.
var ErrPolicy = errors.New("socks: connection not allowed by policy")

// requestError is a malformed or unsupported request: it carries the reply
// the client must get, which no dialer error could tell us.
type requestError struct {
	code Reply
	msg  string
	err  error
}

func (e *requestError) Error() string {
	if e.err != nil {
		return e.msg + ": " + e.err.Error()
	}
	return e.msg
}

func (e *requestError) Unwrap() error { return e.err }

// A request cut short by the handshake deadline is a timeout, not a bad
// request: the client hears 0x06.
func badRequest(code Reply, msg string, err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		code = ReplyTTLExpired
	}
	return &requestError{code: code, msg: msg, err: err}
}

// resolveError marks a failed name lookup: unless it timed out or was
// refused by policy, the client sees "host unreachable", as Tor answers.
type resolveError struct{ err error }

func (e *resolveError) Error() string { return "resolve: " + e.err.Error() }
func (e *resolveError) Unwrap() error { return e.err }

// gVisor's gonet adapter flattens its errors to strings (errors.New of
// tcpip.Error.String()), so errno matching alone misses them when the
// dialer is the userspace stack.
var gvisorMessages = []struct {
	msg  string
	code Reply
}{
	{"connection was refused", ReplyConnectionRefused},
	{"network is unreachable", ReplyNetworkUnreachable},
	{"no route to host", ReplyHostUnreachable},
	{"host is down", ReplyHostUnreachable},
	{"operation timed out", ReplyTTLExpired},
}

// replyFor maps an error from parsing, resolving or dialing to the reply
// code the client gets.
func replyFor(err error) Reply {
	if err == nil {
		return ReplySucceeded
	}
	var re *requestError
	if errors.As(err, &re) {
		return re.code
	}
	if errors.Is(err, ErrPolicy) {
		return ReplyNotAllowed
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return ReplyConnectionRefused
	case errors.Is(err, syscall.ENETUNREACH):
		return ReplyNetworkUnreachable
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.EHOSTDOWN):
		return ReplyHostUnreachable
	case errors.Is(err, syscall.ETIMEDOUT), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, os.ErrDeadlineExceeded):
		return ReplyTTLExpired
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ReplyTTLExpired
	}
	msg := err.Error()
	for _, g := range gvisorMessages {
		if strings.Contains(msg, g.msg) {
			return g.code
		}
	}
	var rerr *resolveError
	if errors.As(err, &rerr) {
		return ReplyHostUnreachable
	}
	return ReplyGeneralFailure
}

// socks4Code is the SOCKS4 reply for a SOCKS5 one: SOCKS4 has only
// "granted" and "rejected or failed".
func socks4Code(r Reply) byte {
	if r == ReplySucceeded {
		return socks4Granted
	}
	return socks4Rejected
}
