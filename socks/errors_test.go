package socks

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// TestErrorReplies: every reply code comes out of the situation that
// should produce it, the connection is closed afterwards, the counter for
// the code moves, and the server keeps serving.
func TestErrorReplies(t *testing.T) {
	const (
		portNetUnreach  = 1
		portHostUnreach = 2
		portPolicy      = 3
		portHang        = 4
		portBoom        = 5
		portGVisor      = 6
	)
	d := newTestDialer(t)
	d.errs[portNetUnreach] = &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ENETUNREACH)}
	d.errs[portHostUnreach] = &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.EHOSTUNREACH)}
	d.errs[portPolicy] = fmt.Errorf("exit policy refuses port 3: %w", ErrPolicy)
	d.errs[portBoom] = errBoom
	d.errs[portGVisor] = &net.OpError{Op: "connect", Net: "tcp", Err: errors.New("connection was refused")}
	d.hang[portHang] = true
	s := &Server{Dialer: d, HandshakeTimeout: 300 * time.Millisecond, DialTimeout: 300 * time.Millisecond}
	addr := startServer(t, s)
	httpPort := startHTTP(t)
	closed := freePort(t)

	greet := []byte{5, 1, 0}
	v4 := func(port uint16) []byte {
		return binary.BigEndian.AppendUint16([]byte{5, 1, 0, 1, 127, 0, 0, 1}, port)
	}
	name := func(n string, port uint16) []byte {
		b := append([]byte{5, 1, 0, 3, byte(len(n))}, n...)
		return binary.BigEndian.AppendUint16(b, port)
	}
	s4 := func(cmd byte, port uint16) []byte {
		b := binary.BigEndian.AppendUint16([]byte{4, cmd}, port)
		return append(b, 127, 0, 0, 1, 0)
	}
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	ok5 := []byte{5, 0}

	tests := []struct {
		name      string
		send      []byte
		halfClose bool   // shut down the sending side after send
		want      []byte // what the server answers before closing
		code      Reply  // counter that must move; ReplySucceeded for none
	}{
		{"refused", cat(greet, v4(closed)), false, cat(ok5, []byte{5, 5}), ReplyConnectionRefused},
		{"gvisor refused", cat(greet, v4(portGVisor)), false, cat(ok5, []byte{5, 5}), ReplyConnectionRefused},
		{"network unreachable", cat(greet, v4(portNetUnreach)), false, cat(ok5, []byte{5, 3}), ReplyNetworkUnreachable},
		{"host unreachable", cat(greet, v4(portHostUnreach)), false, cat(ok5, []byte{5, 4}), ReplyHostUnreachable},
		{"unknown name", cat(greet, name("nowhere.test", httpPort)), false, cat(ok5, []byte{5, 4}), ReplyHostUnreachable},
		{"policy", cat(greet, v4(portPolicy)), false, cat(ok5, []byte{5, 2}), ReplyNotAllowed},
		{"dial timeout", cat(greet, v4(portHang)), false, cat(ok5, []byte{5, 6}), ReplyTTLExpired},
		{"general failure", cat(greet, v4(portBoom)), false, cat(ok5, []byte{5, 1}), ReplyGeneralFailure},
		{"bad request version", cat(greet, []byte{4, 1, 0, 1, 127, 0, 0, 1, 0, 80}), false, cat(ok5, []byte{5, 7}), ReplyCommandNotSupported},
		{"bad command", cat(greet, []byte{5, 9, 0, 1, 127, 0, 0, 1, 0, 80}), false, cat(ok5, []byte{5, 7}), ReplyCommandNotSupported},
		{"bind", cat(greet, []byte{5, 2, 0, 1, 127, 0, 0, 1, 0, 80}), false, cat(ok5, []byte{5, 7}), ReplyCommandNotSupported},
		{"bad address type", cat(greet, []byte{5, 1, 0, 9, 127, 0, 0, 1, 0, 80}), false, cat(ok5, []byte{5, 8}), ReplyAddressNotSupported},
		{"empty name", cat(greet, []byte{5, 1, 0, 3, 0, 0, 80}), false, cat(ok5, []byte{5, 7}), ReplyCommandNotSupported},
		{"truncated request, half-closed", cat(greet, []byte{5, 1, 0, 1, 127, 0}), true, cat(ok5, []byte{5, 7}), ReplyCommandNotSupported},
		{"truncated request, stalled", cat(greet, []byte{5, 1, 0, 3, 20, 'a'}), false, cat(ok5, []byte{5, 6}), ReplyTTLExpired},
		{"no acceptable method", []byte{5, 1, 0x80}, false, []byte{5, 0xFF}, ReplySucceeded},
		{"truncated greeting", []byte{5, 3, 0}, true, nil, ReplySucceeded},
		{"garbage", []byte("GET / HTTP/1.1\r\n\r\n"), false, nil, ReplySucceeded},
		{"socks4 refused", s4(1, closed), false, []byte{0, 0x5B}, ReplyConnectionRefused},
		{"socks4 policy", s4(1, portPolicy), false, []byte{0, 0x5B}, ReplyNotAllowed},
		{"socks4 bind", s4(2, httpPort), false, []byte{0, 0x5B}, ReplyCommandNotSupported},
		{"socks4 truncated", []byte{4, 1, 0, 80, 127}, true, []byte{0, 0x5B}, ReplyCommandNotSupported},
		{"socks4 unterminated user id", append([]byte{4, 1, 0, 80, 127, 0, 0, 1}, bytes.Repeat([]byte{'u'}, 300)...), false, []byte{0, 0x5B}, ReplyCommandNotSupported},
		{"socks4a unknown name", append(s4(1, httpPort)[:4], 0, 0, 0, 9, 0, 'n', 'o', '.', 't', 'e', 's', 't', 0), false, []byte{0, 0x5B}, ReplyHostUnreachable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := s.Stats().Errors[tc.code]
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write(tc.send); err != nil {
				t.Fatal(err)
			}
			if tc.halfClose {
				c.(*net.TCPConn).CloseWrite()
			}
			got, err := io.ReadAll(c) // also proves the server closed
			if err != nil {
				t.Fatalf("read: %v (got %x)", err, got)
			}
			if !bytes.HasPrefix(got, tc.want) || (tc.want == nil && len(got) != 0) {
				t.Errorf("answer %x, want prefix %x", got, tc.want)
			}
			if tc.code != ReplySucceeded {
				if after := s.Stats().Errors[tc.code]; after != before+1 {
					t.Errorf("Errors[%v] went %d → %d", tc.code, before, after)
				}
			}
			// Still serving.
			if body, err := httpGet(t, addr, nil, urlFor(testName, httpPort, "/ok")); err != nil || body != "hello from /ok" {
				t.Errorf("server stopped serving: %q, %v", body, err)
			}
		})
	}
}

func TestReplyFor(t *testing.T) {
	tests := []struct {
		err  error
		want Reply
	}{
		{fmt.Errorf("dial: %w", syscall.ECONNREFUSED), ReplyConnectionRefused},
		{errors.New("connect: no route to host"), ReplyHostUnreachable},
		{errors.New("network is unreachable"), ReplyNetworkUnreachable},
		{os.ErrDeadlineExceeded, ReplyTTLExpired},
		{&resolveError{ErrPolicy}, ReplyNotAllowed},
		{&resolveError{errBoom}, ReplyHostUnreachable},
		{errBoom, ReplyGeneralFailure},
	}
	for _, tc := range tests {
		if got := replyFor(tc.err); got != tc.want {
			t.Errorf("replyFor(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
