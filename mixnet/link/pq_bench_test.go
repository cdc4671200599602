package link

import (
	"context"
	"net"
	"testing"
	"time"
)

// BenchmarkHandshake measures complete handshakes, both ends on this
// machine over an in-memory pipe, classical and hybrid alternating within
// each iteration so that a shared, loaded machine slows both alike. It
// reports handshakes per second of each kind; ns/op is one of each.
func BenchmarkHandshake(b *testing.B) {
	responder := newPQKey(b)
	initiator := newKey(b)
	pk := publicKEM(b, responder)
	var classical, hybrid time.Duration
	for b.Loop() {
		classical += timeHandshake(b, initiator, responder, nil)
		hybrid += timeHandshake(b, initiator, responder, pk)
	}
	n := float64(b.N)
	b.ReportMetric(n/classical.Seconds(), "classical_hs/s")
	b.ReportMetric(n/hybrid.Seconds(), "hybrid_hs/s")
}

// timeHandshake runs one handshake, hybrid when pk is set, and returns how
// long it took, encapsulation included.
func timeHandshake(b *testing.B, initiator, responder KeyPair, pk *KEMPublicKey) time.Duration {
	a, z := net.Pipe()
	defer a.Close()
	defer z.Close()
	ctx := context.Background()
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		_, err := respond(ctx, z, responder, time.Minute)
		done <- err
	}()
	var kem *kemEncap
	if pk != nil {
		kem = encapsulate(pk)
	}
	s, err := initiatorHandshake(ctx, a, initiator, responder.Public, kem, time.Minute)
	if err != nil {
		b.Fatal(err)
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	if s.hybrid != (pk != nil) {
		b.Fatal("handshake of the wrong kind")
	}
	return time.Since(start)
}
