package ipr

import (
	"testing"

	"github.com/nym-go/nym/internal/testpkt"
)

// udp4 and udp6 are the common test packets.
func udp4(t testing.TB, src, dst string, port uint16, payload string) []byte {
	return testpkt.UDP4(t, src, dst, port, payload)
}

func udp6(t testing.TB, src, dst string, port uint16, payload string) []byte {
	return testpkt.UDP6(t, src, dst, port, payload)
}
